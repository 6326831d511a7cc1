#!/usr/bin/env bash
# Start, stop or report the real services PHT's tests and demo run against (DESIGN.md section 9):
#
#   docker    Docker Engine (Debian's docker.io). Started as a background `dockerd` only when
#             `docker info` does not answer; an engine run by systemd or someone else is used as is.
#   registry  Debian's docker-registry on $PHT_DOCKER_REGISTRY (default 127.0.0.1:5000), plain
#             HTTP, no auth. Docker allows insecure pushes to 127.0.0.0/8 by default.
#   image     $PHT_DOCKER_REGISTRY/pht-test/busybox:latest, a FROM-scratch image holding Debian's
#             busybox-static and its applet links, built offline and pushed to the registry.
#   postgres  A PostgreSQL cluster of our own (Debian's postgresql; initdb + pg_ctl as the
#             `postgres` user) in $PG_DIR, on 127.0.0.1:$PG_PORT only, trust auth for loopback,
#             with a database `pht_test`. The tests read its DSN from $PHT_TEST_POSTGRES
#             (.ci/test sets it; default $PG_DSN).
#
# Usage: .ci/services.sh start|stop|status
#
# Idempotent: `start` only starts what does not answer, and rebuilding the image is a cached no-op.
# `stop` stops only what this script started (pid files in /tmp/pht-services/).
# Needs root to start dockerd. PHT_DOCKERD_FLAGS, if set, replaces the automatic flag fallbacks.
set -euo pipefail

STATE_DIR=/tmp/pht-services
REGISTRY_DIR=/tmp/pht-registry
REGISTRY_ADDR=${PHT_DOCKER_REGISTRY:-127.0.0.1:5000}
IMAGE_REPO=pht-test/busybox
IMAGE=$REGISTRY_ADDR/$IMAGE_REPO:latest
DOCKERD_LOG=/tmp/pht-dockerd.log
REGISTRY_LOG=/tmp/pht-registry.log
WAIT_SECONDS=60
PG_DIR=/tmp/pht-postgres
PG_PORT=${PHT_POSTGRES_PORT:-5433}
PG_DSN=postgresql://postgres@127.0.0.1:$PG_PORT/pht_test
PG_LOG=/tmp/pht-postgres.log

# Tried in order until dockerd answers. Plain defaults work on a normal Debian 12 host; the others
# are for sandboxes without netfilter or without overlayfs support.
DOCKERD_FALLBACKS=(
    ""
    "--iptables=false"
    "--iptables=false --storage-driver=vfs"
)

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Milliseconds since the epoch, for step timings.
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# The live pid recorded in $STATE_DIR/$1.pid, if its process is still the named program.
live_pid() {
    local name=$1 comm=$2 pid
    [[ -f $STATE_DIR/$name.pid ]] || return 1
    pid=$(<"$STATE_DIR/$name.pid")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
    echo "$pid"
}

docker_up() { timeout 10 docker info >/dev/null 2>&1; }

registry_up() {
    # A real v2 registry answers 200 with this header; anything else on the port is not ours.
    local headers
    headers=$(curl -fsS --max-time 5 -o /dev/null -D - "http://$REGISTRY_ADDR/v2/" 2>/dev/null) \
        || return 1
    grep -qi '^docker-distribution-api-version: *registry/2.0' <<<"$headers"
}

port_taken() { (exec 3<>"/dev/tcp/${REGISTRY_ADDR%:*}/${REGISTRY_ADDR##*:}") 2>/dev/null; }

# ---------------------------------------------------------------------------------------- docker

start_dockerd_with() {
    local flags=$1 pid deadline
    log "starting dockerd ${flags:-(default flags)}; log in $DOCKERD_LOG"
    # shellcheck disable=SC2086  # flags are deliberately word-split
    setsid dockerd $flags </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$STATE_DIR/dockerd.pid"
    deadline=$((SECONDS + WAIT_SECONDS))
    while ((SECONDS < deadline)); do
        if docker_up; then
            echo "$flags" >"$STATE_DIR/dockerd.flags"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "dockerd ${flags:-(default flags)} exited; last log lines:"
            tail -n 5 "$DOCKERD_LOG" >&2 || true
            rm -f "$STATE_DIR/dockerd.pid"
            return 1
        fi
        sleep 0.3
    done
    log "dockerd ${flags:-(default flags)} did not answer within ${WAIT_SECONDS}s; stopping it"
    stop_pid dockerd dockerd
    return 1
}

start_docker() {
    if docker_up; then
        log "docker: already answering"
        return 0
    fi
    command -v dockerd >/dev/null || die "dockerd not found; apt-get install docker.io"
    if [[ -n ${DOCKER_HOST:-} && $DOCKER_HOST != unix:///var/run/docker.sock ]]; then
        die "DOCKER_HOST=$DOCKER_HOST does not answer, and a local dockerd would not serve it"
    fi
    [[ $(id -u) == 0 ]] || die "starting dockerd needs root"
    local pid
    if pid=$(live_pid dockerd dockerd); then
        die "dockerd (pid $pid) is running but not answering; see $DOCKERD_LOG"
    fi
    local candidates=("${DOCKERD_FALLBACKS[@]}")
    if [[ -n ${PHT_DOCKERD_FLAGS+set} ]]; then
        candidates=("$PHT_DOCKERD_FLAGS")
    fi
    local flags
    for flags in "${candidates[@]}"; do
        if start_dockerd_with "$flags"; then
            log "docker: up with flags '${flags}'"
            return 0
        fi
    done
    die "dockerd did not start with any of: ${candidates[*]@Q}; see $DOCKERD_LOG"
}

# -------------------------------------------------------------------------------------- registry

write_registry_config() {
    mkdir -p "$REGISTRY_DIR/data"
    cat >"$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  fields:
    service: pht-registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

start_registry() {
    if registry_up; then
        log "registry: already answering at $REGISTRY_ADDR"
        return 0
    fi
    command -v docker-registry >/dev/null || die "docker-registry not found; apt-get install docker-registry"
    if port_taken; then
        # Debian's own docker-registry.service listens on :5000 with htpasswd auth when systemd
        # starts it on install; it is not the open test registry, so make way for ours.
        if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
            log "stopping Debian's docker-registry.service, which holds port ${REGISTRY_ADDR##*:}"
            systemctl stop docker-registry
        else
            die "$REGISTRY_ADDR is taken by something that is not an open v2 registry"
        fi
    fi
    write_registry_config
    log "starting docker-registry on $REGISTRY_ADDR; log in $REGISTRY_LOG"
    setsid docker-registry serve "$REGISTRY_DIR/config.yml" </dev/null >>"$REGISTRY_LOG" 2>&1 9>&- &
    local pid=$! deadline=$((SECONDS + WAIT_SECONDS))
    echo "$pid" >"$STATE_DIR/registry.pid"
    while ((SECONDS < deadline)); do
        if registry_up; then
            log "registry: up at $REGISTRY_ADDR"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 5 "$REGISTRY_LOG" >&2 || true
            rm -f "$STATE_DIR/registry.pid"
            die "docker-registry exited; see $REGISTRY_LOG"
        fi
        sleep 0.2
    done
    die "docker-registry did not answer within ${WAIT_SECONDS}s; see $REGISTRY_LOG"
}

# -------------------------------------------------------------------------------------- postgres

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir ]] || die "PostgreSQL not found; apt-get install postgresql"
    echo "$dir"
}

as_postgres() { runuser -u postgres -- "$@"; }

postgres_up() {
    psql "$PG_DSN" -XAtqc 'SELECT 1' >/dev/null 2>&1
}

start_postgres() {
    if postgres_up; then
        log "postgres: already answering at $PG_DSN"
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "starting our PostgreSQL cluster needs root (it runs as postgres)"
    getent passwd postgres >/dev/null || die "no postgres user; apt-get install postgresql"
    local bin
    bin=$(pg_bin)
    if [[ ! -f $PG_DIR/data/PG_VERSION ]]; then
        log "postgres: initdb in $PG_DIR/data"
        rm -rf "$PG_DIR"
        install -d -o postgres -g postgres -m 0700 "$PG_DIR" "$PG_DIR/data" "$PG_DIR/socket"
        as_postgres "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    touch "$PG_LOG" && chown postgres "$PG_LOG"
    log "postgres: starting on 127.0.0.1:$PG_PORT; log in $PG_LOG"
    # -w waits until it accepts connections. Loopback only, socket in a directory of our own.
    # fd 9 (the start/stop lock) closed: the server would hold the lock for its whole life.
    as_postgres "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_LOG" -w -t "$WAIT_SECONDS" start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR/socket -c fsync=on" >/dev/null 9>&- \
        || { tail -n 5 "$PG_LOG" >&2; die "PostgreSQL did not start; see $PG_LOG"; }
    head -n 1 "$PG_DIR/data/postmaster.pid" >"$STATE_DIR/postgres.pid"
    local admin=postgresql://postgres@127.0.0.1:$PG_PORT/postgres
    if [[ -z $(psql "$admin" -XAtqc "SELECT 1 FROM pg_database WHERE datname = 'pht_test'") ]]; then
        psql "$admin" -Xqc 'CREATE DATABASE pht_test' >/dev/null
    fi
    postgres_up || die "PostgreSQL started but $PG_DSN does not answer; see $PG_LOG"
    log "postgres: up at $PG_DSN"
}

stop_postgres() {
    [[ -f $STATE_DIR/postgres.pid ]] || return 0
    if [[ -f $PG_DIR/data/postmaster.pid ]]; then
        log "stopping postgres ($PG_DIR/data)"
        as_postgres "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null || true
    fi
    rm -f "$STATE_DIR/postgres.pid"
}

# ----------------------------------------------------------------------------------------- image

BUILD_CTX=""
trap '[[ -z $BUILD_CTX ]] || rm -rf "$BUILD_CTX"' EXIT

build_image() {
    local busybox=/bin/busybox ctx
    [[ -x $busybox ]] || die "$busybox not found; apt-get install busybox-static"
    # The image has no libc, so only a static busybox runs in it.
    if ldd "$busybox" >/dev/null 2>&1; then
        die "$busybox is dynamically linked; apt-get install busybox-static"
    fi
    ctx=$(mktemp -d /tmp/pht-busybox-ctx.XXXXXX)
    BUILD_CTX=$ctx
    # -p keeps the file's time, which the legacy builder's cache key includes.
    cp -p "$busybox" "$ctx/busybox"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
LABEL org.pht.test-image=busybox
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p -m 1777 /tmp
CMD ["/bin/sh"]
EOF
    # The legacy builder needs no network for FROM scratch; BuildKit may want to fetch a frontend,
    # and the buildx plugin is not part of Debian's docker.io.
    log "image: building $IMAGE (cached when unchanged)"
    DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" "$ctx" >/dev/null
    docker image prune --force --filter label=org.pht.test-image=busybox >/dev/null
    log "image: pushing $IMAGE"
    docker push --quiet "$IMAGE" >/dev/null
    # Prove a container actually starts, not just that the daemon answers.
    [[ $(docker run --rm --network none "$IMAGE" echo ok) == ok ]] \
        || die "a container from $IMAGE did not run; see $DOCKERD_LOG"
    log "image: $IMAGE pushed and runs"
}

# ------------------------------------------------------------------------------------ stop/status

stop_pid() {
    local name=$1 comm=$2 pid
    if ! pid=$(live_pid "$name" "$comm"); then
        rm -f "$STATE_DIR/$name.pid"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE_DIR/$name.pid"
}

describe() {
    local name=$1 comm=$2 pid
    if pid=$(live_pid "$name" "$comm"); then
        echo "started by this script, pid $pid"
    else
        echo "not started by this script"
    fi
}

status() {
    local rc=0
    if docker_up; then
        local info
        info=$(docker info --format '{{.ServerVersion}}, storage {{.Driver}}' 2>/dev/null)
        local flags=""
        [[ -f $STATE_DIR/dockerd.flags ]] && flags=", flags '$(<"$STATE_DIR/dockerd.flags")'"
        echo "docker:   up ($info; $(describe dockerd dockerd)$flags)"
    else
        echo "docker:   down"
        rc=3
    fi
    if registry_up; then
        echo "registry: up at $REGISTRY_ADDR ($(describe registry docker-registry))"
        local accept=application/vnd.docker.distribution.manifest.v2+json digest
        digest=$(curl -fsS --max-time 5 -o /dev/null -D - -H "Accept: $accept" \
            "http://$REGISTRY_ADDR/v2/$IMAGE_REPO/manifests/latest" 2>/dev/null \
            | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p')
        if [[ -n $digest ]]; then
            echo "image:    $IMAGE ($digest)"
        else
            echo "image:    $IMAGE missing"
            rc=3
        fi
    else
        echo "registry: down at $REGISTRY_ADDR"
        echo "image:    unknown (registry down)"
        rc=3
    fi
    if postgres_up; then
        echo "postgres: up at $PG_DSN ($(describe postgres postgres))"
    else
        echo "postgres: down at $PG_DSN"
        rc=3
    fi
    return "$rc"
}

main() {
    mkdir -p "$STATE_DIR"
    case ${1:-} in
        start | stop)
            # One start or stop at a time, so concurrent callers (CI, tests, the demo) do not race
            # to start a second dockerd. The daemons themselves are started with fd 9 closed.
            exec 9>"$STATE_DIR/lock"
            flock --timeout 300 9 || die "another services.sh start/stop holds $STATE_DIR/lock"
            ;;
    esac
    case ${1:-} in
        start)
            local t0 t1 t2 t3 t4
            t0=$(now_ms)
            start_docker
            t1=$(now_ms)
            start_registry
            t2=$(now_ms)
            build_image
            t3=$(now_ms)
            start_postgres
            t4=$(now_ms)
            log "timings: docker $((t1 - t0)) ms, registry $((t2 - t1)) ms, image $((t3 - t2)) ms," \
                "postgres $((t4 - t3)) ms"
            status
            ;;
        stop)
            stop_postgres
            stop_pid registry docker-registry
            stop_pid dockerd dockerd
            rm -f "$STATE_DIR/dockerd.flags"
            ;;
        status)
            status
            ;;
        *)
            echo "usage: $0 start|stop|status" >&2
            exit 2
            ;;
    esac
}

main "$@"
