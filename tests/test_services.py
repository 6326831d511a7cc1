"""The real services the suite runs against answer (DESIGN.md section 9, `.ci/services.sh`).

Checks the Docker engine, the local image registry at ``PHT_DOCKER_REGISTRY`` and the
``pht-test/busybox`` image pushed there. Under ``CI=true`` an unreachable engine is a failure, so a
broken CI host cannot pass by skipping every container test; elsewhere it is a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import docker
import pytest
import requests
from docker.errors import DockerException

pytestmark = pytest.mark.docker

REGISTRY = os.environ.get("PHT_DOCKER_REGISTRY", "127.0.0.1:5000")
REPOSITORY = f"{REGISTRY}/pht-test/busybox"
IMAGE = f"{REPOSITORY}:latest"
HINT = "run `.ci/services.sh start` (as root) to start the engine, the registry and the image"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except (DockerException, requests.RequestException) as exc:
        reason = f"Docker engine unreachable ({exc}); {HINT}"
        if _in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield client
    finally:
        client.close()


def test_docker_engine_answers_ping(docker_client: docker.DockerClient) -> None:
    assert docker_client.ping() is True


def test_registry_answers_v2_api(docker_client: docker.DockerClient) -> None:
    try:
        response = requests.get(f"http://{REGISTRY}/v2/", timeout=10)
    except requests.RequestException as exc:
        pytest.fail(f"registry at {REGISTRY} unreachable ({exc}); {HINT}", pytrace=False)
    assert response.status_code == 200, f"GET /v2/ on {REGISTRY}: {response.status_code}"
    assert response.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"


def test_busybox_image_pulls_from_registry_and_runs(docker_client: docker.DockerClient) -> None:
    image = docker_client.images.pull(REPOSITORY, tag="latest")
    repo_digests: list[str] = image.attrs.get("RepoDigests") or []
    assert any(d.startswith(f"{REPOSITORY}@sha256:") for d in repo_digests), repo_digests

    container = docker_client.containers.create(
        IMAGE,
        ["echo", "hello"],
        network_mode="none",
        labels={"org.pht.test": "test_services"},
    )
    try:
        container.start()
        result = container.wait(timeout=60)
        logs = container.logs(stdout=True, stderr=True)
    finally:
        container.remove(force=True)

    assert result["StatusCode"] == 0, logs
    assert logs == b"hello\n"


def test_no_started_service_holds_the_start_lock() -> None:
    """``services.sh`` starts its daemons with the start/stop lock's descriptor closed: one that
    inherited it (PostgreSQL once did) held the lock for life, and the next ``start`` (the demo
    after the tests, or a second CI run) waited 300 s and failed."""
    lock = "/tmp/pht-services/lock"  # .ci/services.sh's STATE_DIR
    holders = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}
        except OSError:  # gone, or not ours to read
            continue
        if lock in targets:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = cmdline.read().replace(b"\0", b" ")[:80].decode(errors="replace")
            holders.append(f"{pid}: {argv}")
    assert holders == [], f"these processes hold {lock}: {holders}"
