#!/usr/bin/env bash
# Build the deployment images without network access for `docker build` (docs/deploy.md):
#
#   pht/registry:dev     `pht serve`; data directory /var/lib/pht, a volume; port 8555
#   pht/siteclient:dev   `siteclient follow` and `siteclient serve-files`; port 8443
#
# Both run as the unprivileged user `pht` (uid 10001) and are FROM one image they share,
#   pht/deploy-deps:KEY  the project's own base image, $REG/pht-examples/python-numpy:bookworm
#                        (Debian 12 minbase with python3 3.11, made by examples/images/build.sh),
#                        plus /opt/pht/deps: PHT's runtime dependencies at exactly the versions
#                        installed on this host (examples/deploy/pins.py), `pip install
#                        --target`ed here from PyPI or pip's cache and cached under
#                        $PHT_EXAMPLES_CACHE (default /var/cache/pht-examples); KEY hashes the
#                        pins. Compiled wheels (cryptography, PyNaCl, psycopg-binary) are
#                        manylinux cp311 wheels, which Debian 12's Python runs
# and add /opt/pht/app, PHT itself, installed from a wheel built here from this checkout (offline,
# with setuptools from the same cache), and /usr/local/bin/pht and siteclient.
#
# Only the first run on a machine needs PyPI (or pip's find-links); with --offline a missing
# cache is an error instead. Each image carries a label with the hash of what went into it and is
# rebuilt only when that changes; `docker build` reuses the shared layers.
#
# Usage: examples/deploy/build-images.sh [--offline]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REG=${PHT_DOCKER_REGISTRY:-127.0.0.1:5000}
CACHE_DIR=${PHT_EXAMPLES_CACHE:-/var/cache/pht-examples}
PY=${PYTHON:-python3}
BASE=$REG/pht-examples/python-numpy:bookworm
REGISTRY_IMAGE=pht/registry:dev
SITECLIENT_IMAGE=pht/siteclient:dev
# What PHT's wheel is built with: pyproject's build-system wants setuptools>=68, and from 70.1
# setuptools builds wheels without the `wheel` package. Change it to fetch it again.
BUILD_TOOLS="setuptools>=70.1"
PACKAGES=(crypto ledger api siteclient cli)

OFFLINE=0
case ${1:-} in
    "") ;;
    --offline) OFFLINE=1 ;;
    -h | --help)
        sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--offline]" >&2
        exit 2
        ;;
esac

LOG_TAG=deploy
# shellcheck source=examples/images/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../images/common.sh"
pip() { PIP_ROOT_USER_ACTION=ignore "$PY" -m pip --disable-pip-version-check "$@"; }

WORK=""
cleanup() { [[ -z $WORK ]] || rm -rf "$WORK"; }
trap cleanup EXIT

image_label() {
    docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

# A hash of a folder's file names, modes and contents (not their times).
tree_hash() {
    (cd "$1" && find . -type f -printf '%P %m\n' | LC_ALL=C sort \
        && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha
}

need_network() {
    ((OFFLINE == 0)) || die "$1 is not cached in $CACHE_DIR and --offline was given; run" \
        "examples/deploy/build-images.sh once with access to PyPI (.ci/setup does)"
}

# The runtime dependencies for the pins in $1, installed once into the cache; prints the folder.
deps_dir() {
    local pins=$1 key dir
    key=$({ cat "$pins"; echo "target cp311 manylinux x86_64"; } | sha | cut -c1-16)
    dir=$CACHE_DIR/deploy-deps-$key
    if [[ ! -f $dir/.complete ]]; then
        need_network "the dependencies $(tr '\n' ' ' <"$pins")"
        log "deps: pip install --target $dir ($(wc -l <"$pins") pinned distributions)"
        rm -rf "$dir.tmp"
        # Binary wheels only: nothing is compiled on the host for the image.
        if ! pip install --quiet --no-deps --no-compile --only-binary=:all: --target "$dir.tmp" \
            -r "$pins" >"$WORK/pip-deps.log" 2>&1; then
            cat "$WORK/pip-deps.log" >&2
            die "pip install of the dependencies failed"
        fi
        rm -rf "$dir.tmp/bin"
        touch "$dir.tmp/.complete"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

# setuptools, installed once into the cache, for building PHT's wheel without network access.
tools_dir() {
    local dir
    dir=$CACHE_DIR/deploy-build-tools-$(echo "$BUILD_TOOLS" | sha | cut -c1-16)
    if [[ ! -f $dir/.complete ]]; then
        need_network "the build tools ($BUILD_TOOLS)"
        log "tools: pip install --target $dir $BUILD_TOOLS"
        rm -rf "$dir.tmp"
        if ! pip install --quiet --no-deps --only-binary=:all: --target "$dir.tmp" "$BUILD_TOOLS" \
            >"$WORK/pip-tools.log" 2>&1; then
            cat "$WORK/pip-tools.log" >&2
            die "pip install of $BUILD_TOOLS failed"
        fi
        rm -rf "$dir.tmp/bin"
        touch "$dir.tmp/.complete"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir"
}

# What PHT's wheel is built from: pyproject.toml, README.md and the packages, without caches.
copy_source() {
    local src=$1 package
    mkdir -p "$src"
    cp -p "$ROOT/pyproject.toml" "$ROOT/README.md" "$src/"
    for package in "${PACKAGES[@]}"; do
        cp -rp "$ROOT/$package" "$src/$package"
    done
    find "$src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
}

# PHT installed from its wheel into $2 (only what the wheel holds: modules and package data).
install_app() {
    local src=$1 app=$2 tools=$3
    # The cached setuptools, not an isolated build environment (which pip would fill from PyPI).
    if ! PYTHONPATH=$tools pip wheel --quiet --no-deps --no-index --no-build-isolation \
        --wheel-dir "$WORK/wheel" "$src" >"$WORK/pip-wheel.log" 2>&1; then
        cat "$WORK/pip-wheel.log" >&2
        die "building PHT's wheel failed"
    fi
    if ! pip install --quiet --no-deps --no-index --no-compile --target "$app" \
        "$WORK"/wheel/pht-*.whl >"$WORK/pip-app.log" 2>&1; then
        cat "$WORK/pip-app.log" >&2
        die "installing PHT's wheel failed"
    fi
    rm -rf "$app/bin"
}

# docker_build IMAGE DOCKERFILE CONTEXT KEY ARG=VALUE: build with the legacy builder, which needs
# no network for a local FROM image (BuildKit might want a frontend image), labelled with KEY.
docker_build() {
    local image=$1 dockerfile=$2 context=$3 key=$4 arg=$5
    log "building $image"
    if ! DOCKER_BUILDKIT=0 docker build --quiet --build-arg "$arg" --file "$dockerfile" \
        --label "org.pht.deploy.context=$key" --tag "$image" "$context" \
        >"$WORK/build.log" 2>&1; then
        cat "$WORK/build.log" >&2
        die "docker build of $image failed"
    fi
}

# The shared image for the dependencies in $1 (built once per set of pins); prints its name.
deps_image() {
    local deps=$1 image key
    key=${deps##*/deploy-deps-}
    image=pht/deploy-deps:$key
    key=$(echo "base $(docker image inspect --format '{{.Id}}' "$BASE") deps $key" \
        | cat - "$HERE/images/deps.Dockerfile" | sha | cut -c1-16)
    if [[ $(image_label "$image" org.pht.deploy.context) != "$key" ]]; then
        mkdir -p "$WORK/deps-ctx"
        cp -al "$deps" "$WORK/deps-ctx/deps" 2>/dev/null || cp -a "$deps" "$WORK/deps-ctx/deps"
        rm -f "$WORK/deps-ctx/deps/.complete"
        docker_build "$image" "$HERE/images/deps.Dockerfile" "$WORK/deps-ctx" "$key" "BASE=$BASE"
        # Older dependency images: gone unless an image still uses them.
        docker image ls --format '{{.Repository}}:{{.Tag}}' pht/deploy-deps \
            | grep -vxF "$image" | xargs -r docker image rm >/dev/null 2>&1 || true
    fi
    echo "$image"
}

# build IMAGE NAME DEPS KEY: build images/NAME.Dockerfile FROM DEPS unless IMAGE carries KEY.
build() {
    local image=$1 name=$2 deps=$3 key=$4
    if [[ $(image_label "$image" org.pht.deploy.context) == "$key" ]]; then
        log "$image present (context $key)"
        return 0
    fi
    docker_build "$image" "$HERE/images/$name.Dockerfile" "$WORK/ctx" "$key" "DEPS=$deps"
    # The new image's command runs: every module imports under Debian's Python, as its user.
    docker run --rm --network none "$image" --help >/dev/null \
        || die "$image does not run its command"
}

main() {
    local t0 pins deps tools src_key deps_id registry_key siteclient_key
    command -v docker >/dev/null || die "docker not found; apt-get install docker.io"
    timeout 10 docker info >/dev/null 2>&1 \
        || die "the Docker engine does not answer; run .ci/services.sh start"
    if ! docker image inspect "$BASE" >/dev/null 2>&1; then
        docker pull --quiet "$BASE" >/dev/null 2>&1 \
            || die "the base image $BASE is missing; run examples/images/build.sh"
    fi
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/deploy-build.lock"
    flock --timeout 900 9 || die "another build holds $CACHE_DIR/deploy-build.lock"
    # In the cache's file system, so the dependencies are hard-linked into the context, not copied.
    WORK=$(mktemp -d "$CACHE_DIR/deploy-build.XXXXXX")
    t0=$(now_ms)

    pins=$WORK/requirements.txt
    (cd "$ROOT" && "$PY" -m examples.deploy.pins "$ROOT/pyproject.toml") >"$pins" \
        || die "cannot pin the dependencies (examples/deploy/pins.py)"
    deps=$(deps_dir "$pins")
    deps=$(deps_image "$deps")
    tools=$(tools_dir)
    copy_source "$WORK/src"
    src_key=$(tree_hash "$WORK/src")
    deps_id=$(docker image inspect --format '{{.Id}}' "$deps")
    context_key() {
        { echo "deps $deps_id src $src_key"; cat "$1"; tree_hash "$HERE/images/bin"; } \
            | sha | cut -c1-16
    }
    registry_key=$(context_key "$HERE/images/registry.Dockerfile")
    siteclient_key=$(context_key "$HERE/images/siteclient.Dockerfile")
    if [[ $(image_label "$REGISTRY_IMAGE" org.pht.deploy.context) != "$registry_key" \
        || $(image_label "$SITECLIENT_IMAGE" org.pht.deploy.context) != "$siteclient_key" ]]; then
        mkdir -p "$WORK/ctx"
        install_app "$WORK/src" "$WORK/ctx/app" "$tools"
        cp -rp "$HERE/images/bin" "$WORK/ctx/bin"
    fi
    build "$REGISTRY_IMAGE" registry "$deps" "$registry_key"
    build "$SITECLIENT_IMAGE" siteclient "$deps" "$siteclient_key"
    docker image prune --force --filter "label=org.pht.deploy.image" >/dev/null
    log "done in $(($(now_ms) - t0)) ms"
    printf '%s %s\n' "$REGISTRY_IMAGE" "$(docker image inspect --format '{{.Id}}' "$REGISTRY_IMAGE")"
    printf '%s %s\n' "$SITECLIENT_IMAGE" "$(docker image inspect --format '{{.Id}}' "$SITECLIENT_IMAGE")"
}

main
