#!/usr/bin/env bash
# The README's first command: on a fresh Debian 12 machine (as root) set up everything — packages,
# the Docker engine, the local image registry, the example images — then run the full federated
# demo (examples/demo.py): a registry, three sites with their SPARQL endpoints, an iterative
# analysis in real containers, an allowlist refusal and an audit. It cleans up after itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PHT_DOCKER_REGISTRY=127.0.0.1:5000
echo "== setting up (packages, Docker engine, image registry, example images)"
bash .ci/setup
echo "== the demo"
exec python3 -m examples.demo "$@"
