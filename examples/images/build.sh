#!/usr/bin/env bash
# Build the example images offline (DESIGN.md section 9) and push them to the local registry:
#
#   $REG/pht-examples/python-numpy:bookworm  a Debian root file system from `debootstrap
#                                            --variant=minbase` with python3 and numpy, imported
#                                            with `docker import` (no Docker Hub involved)
#   $REG/pht-examples/logreg:1               the site part of the federated logistic regression
#                                            (examples/logreg/logreg_site.py), FROM the base
#   $REG/pht-examples/oxigraph:$OXIGRAPH_VERSION
#                                            a site's SPARQL endpoint: the `oxigraph` server binary
#                                            from PyPI's wheel, FROM the base
#   $REG/untrusted/exfiltrate:1              an image no allowlist admits, for the demo's refusal,
#                                            FROM $REG/pht-test/busybox:latest (.ci/services.sh)
#
# $REG is $PHT_DOCKER_REGISTRY (default 127.0.0.1:5000). Needs root (debootstrap), a running
# Docker engine and registry (`.ci/services.sh start`), the Debian mirror apt uses, and PyPI.
#
# Idempotent and fast when nothing changed: the debootstrap root file system is cached as a tarball
# under $PHT_EXAMPLES_CACHE (default /var/cache/pht-examples), keyed by its recipe; each image
# carries a label with the hash of what went into it and is rebuilt only when that hash changes;
# a push is skipped when the registry already serves the local image's digest.
#
# Usage: examples/images/build.sh [--no-push]
# Environment: PHT_DEBIAN_MIRROR overrides the mirror found in apt's sources.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
EXAMPLES=$(dirname "$HERE")
REG=${PHT_DOCKER_REGISTRY:-127.0.0.1:5000}
CACHE_DIR=${PHT_EXAMPLES_CACHE:-/var/cache/pht-examples}
PY=${PYTHON:-python3}

SUITE=bookworm
INCLUDE=python3-minimal,python3-numpy
# Bump when the way the root file system is made or trimmed changes: it is part of the cache key.
ROOTFS_RECIPE_VERSION=1
OXIGRAPH_VERSION=0.5.13

BASE=$REG/pht-examples/python-numpy:$SUITE
LOGREG=$REG/pht-examples/logreg:1
OXIGRAPH=$REG/pht-examples/oxigraph:$OXIGRAPH_VERSION
UNTRUSTED=$REG/untrusted/exfiltrate:1
BUSYBOX=$REG/pht-test/busybox:latest

PUSH=1
case ${1:-} in
    "") ;;
    --no-push) PUSH=0 ;;
    -h | --help)
        sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--no-push]" >&2
        exit 2
        ;;
esac

LOG_TAG=examples
# shellcheck source=examples/images/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORK=""
cleanup() { [[ -z $WORK ]] || rm -rf "$WORK"; }
trap cleanup EXIT


# The label value an image carries, or nothing when the image is absent.
image_label() {
    docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

image_id() { docker image inspect --format '{{.Id}}' "$1"; }

# The first URI apt uses for the suite itself, e.g. http://deb.debian.org/debian.
debian_mirror() {
    if [[ -n ${PHT_DEBIAN_MIRROR:-} ]]; then
        echo "${PHT_DEBIAN_MIRROR%/}"
        return
    fi
    local uri
    # shellcheck disable=SC2016  # $(RELEASE) and $(REPO_URI) are apt's placeholders, not the shell's
    uri=$(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null \
        | awk -v suite="$SUITE" '$1 == suite { print $2; exit }')
    [[ -n $uri ]] || die "no '$SUITE' source in apt's configuration; set PHT_DEBIAN_MIRROR"
    echo "${uri%/}"
}

# Push unless the registry already serves the digest the local image was pushed as.
push() {
    local image=$1 repo=${1%:*} tag=${1##*:} path digest remote
    ((PUSH)) || return 0
    path=${repo#"$REG"/}
    digest=$(docker image inspect --format '{{join .RepoDigests "\n"}}' "$image" \
        | sed -n "s|^$repo@||p" | head -n 1)
    if [[ -n $digest ]]; then
        remote=$(curl -fsS --max-time 10 -o /dev/null -D - \
            -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
            "http://$REG/v2/$path/manifests/$tag" 2>/dev/null \
            | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p') || true
        if [[ $remote == "$digest" ]]; then
            log "push: $image already in the registry ($digest)"
            return 0
        fi
    fi
    log "push: $image"
    docker push --quiet "$image" >/dev/null
}

# ------------------------------------------------------------------------------------ base image

make_rootfs_tarball() {
    local tarball=$1 mirror rootfs t0
    mirror=$(debian_mirror)
    command -v debootstrap >/dev/null || die "debootstrap not found; apt-get install debootstrap"
    [[ $(id -u) == 0 ]] || die "debootstrap needs root"
    mkdir -p "$CACHE_DIR/debs"
    rootfs=$WORK/rootfs
    log "base: debootstrap --variant=minbase --include=$INCLUDE $SUITE from $mirror"
    t0=$(now_ms)
    # --cache-dir keeps the downloaded .debs, so a rerun after a failure downloads nothing twice.
    if ! debootstrap --variant=minbase --include="$INCLUDE" --cache-dir="$CACHE_DIR/debs" \
        "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/debootstrap.log" >&2
        [[ ! -f $rootfs/debootstrap/debootstrap.log ]] || tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    log "base: debootstrap done in $(($(now_ms) - t0)) ms"
    # Proof that the tree runs what the images need, before anything is cached.
    chroot "$rootfs" python3 -c 'import numpy, sys; print("python", sys.version.split()[0], "numpy", numpy.__version__)' >&2 \
        || die "python3 with numpy does not run in the new root file system"
    # Trim what containers never use: package caches and lists, docs, man pages, translations.
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/debootstrap
    find "$rootfs/dev" "$rootfs/proc" "$rootfs/sys" "$rootfs/run" "$rootfs/tmp" \
        -mindepth 1 -delete 2>/dev/null || true
    # The engine provides these at run time; an empty resolv.conf keeps the host's out of the tree.
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/hostname"
    tar -C "$rootfs" --numeric-owner --sort=name -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    log "base: cached $(du -h "$tarball" | cut -f1) root file system as $tarball"
}

build_base() {
    local key tarball
    key=$(printf 'suite=%s variant=minbase include=%s recipe=%s\n' \
        "$SUITE" "$INCLUDE" "$ROOTFS_RECIPE_VERSION" | sha | cut -c1-16)
    if [[ $(image_label "$BASE" org.pht.examples.recipe) == "$key" ]]; then
        log "base: $BASE present (recipe $key)"
        return 0
    fi
    tarball=$CACHE_DIR/rootfs-$SUITE-python-numpy-$key.tar
    if [[ -f $tarball ]]; then
        log "base: using cached $tarball"
    else
        make_rootfs_tarball "$tarball"
    fi
    log "base: docker import $BASE"
    docker import \
        --change "LABEL org.pht.examples.image=python-numpy org.pht.examples.recipe=$key" \
        --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        "$tarball" "$BASE" >/dev/null
    docker run --rm --network none --read-only --user 65534 "$BASE" \
        python3 -c 'import numpy; print("base: numpy", numpy.__version__, "imports as nobody")' >&2
}

# ------------------------------------------------------------------------ images from Dockerfiles

# build_from NAME IMAGE PARENT FILE... : build $HERE/NAME/Dockerfile with the given files in its
# context, FROM PARENT, unless IMAGE already carries the hash of exactly these inputs.
build_from() {
    local name=$1 image=$2 parent=$3 ctx key f
    shift 3
    ctx=$WORK/ctx-$name
    mkdir -p "$ctx"
    cp -p "$HERE/$name/Dockerfile" "$ctx/Dockerfile"
    for f in "$@"; do cp -p "$f" "$ctx/"; done
    # The hash covers the parent image id, the file names, contents and modes, not their times.
    key=$({
        echo "parent $(image_id "$parent")"
        (cd "$ctx" && find . -type f -printf '%P %m\n' | LC_ALL=C sort \
            && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    } | sha | cut -c1-16)
    if [[ $(image_label "$image" org.pht.examples.context) == "$key" ]]; then
        log "$name: $image present (context $key)"
        return 0
    fi
    log "$name: building $image"
    # The legacy builder needs no network for a local FROM image; BuildKit might want a frontend.
    if ! DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$parent" \
        --label "org.pht.examples.context=$key" --tag "$image" "$ctx" >"$WORK/build-$name.log" 2>&1; then
        cat "$WORK/build-$name.log" >&2
        die "docker build of $image failed"
    fi
    docker image prune --force --filter "label=org.pht.examples.image=$name" >/dev/null
}

oxigraph_binary() {
    local dir=$CACHE_DIR/oxigraph-$OXIGRAPH_VERSION
    if [[ ! -x $dir/bin/oxigraph ]]; then
        log "oxigraph: pip install oxigraph==$OXIGRAPH_VERSION into $dir"
        rm -rf "$dir.tmp"
        if ! PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet --disable-pip-version-check \
            --no-deps --no-compile --target "$dir.tmp" "oxigraph==$OXIGRAPH_VERSION" \
            >"$WORK/pip.log" 2>&1; then
            cat "$WORK/pip.log" >&2
            die "pip install oxigraph==$OXIGRAPH_VERSION failed"
        fi
        [[ -x $dir.tmp/bin/oxigraph ]] || die "the oxigraph wheel brought no bin/oxigraph"
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir/bin/oxigraph"
}

main() {
    local t0 t1 t2 t3 t4 oxigraph image
    command -v docker >/dev/null || die "docker not found; apt-get install docker.io"
    timeout 10 docker info >/dev/null 2>&1 || die "the Docker engine does not answer; run .ci/services.sh start"
    mkdir -p "$CACHE_DIR"
    # One build at a time: the demo, CI and a developer may start this script together.
    exec 9>"$CACHE_DIR/build.lock"
    flock --timeout 900 9 || die "another build holds $CACHE_DIR/build.lock"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/pht-examples-build.XXXXXX")

    t0=$(now_ms)
    build_base
    push "$BASE"
    t1=$(now_ms)
    build_from logreg "$LOGREG" "$BASE" "$EXAMPLES/logreg/logreg_site.py"
    push "$LOGREG"
    t2=$(now_ms)
    oxigraph=$(oxigraph_binary)
    build_from oxigraph "$OXIGRAPH" "$BASE" "$oxigraph" "$HERE/oxigraph/start-endpoint"
    push "$OXIGRAPH"
    t3=$(now_ms)
    if ! docker image inspect "$BUSYBOX" >/dev/null 2>&1; then
        docker pull --quiet "$BUSYBOX" >/dev/null 2>&1 \
            || die "$BUSYBOX is missing; run .ci/services.sh start"
    fi
    build_from untrusted "$UNTRUSTED" "$BUSYBOX"
    push "$UNTRUSTED"
    t4=$(now_ms)
    log "timings: base $((t1 - t0)) ms, logreg $((t2 - t1)) ms, oxigraph $((t3 - t2)) ms," \
        "untrusted $((t4 - t3)) ms, total $((t4 - t0)) ms"
    for image in "$BASE" "$LOGREG" "$OXIGRAPH" "$UNTRUSTED"; do
        printf '%s %s\n' "$image" "$(image_id "$image")"
    done
}

main
