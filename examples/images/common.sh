# Shared by the image build scripts (examples/images/build.sh, examples/deploy/build-images.sh):
# sourced after the script sets LOG_TAG to the prefix of its log lines.

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
now_ms() {
    local t=${EPOCHREALTIME/./}
    echo $((t / 1000))
}
sha() { sha256sum | cut -c1-64; }
