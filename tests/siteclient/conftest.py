"""Docker fixtures for the site client: the real engine, the local image registry, test images.

``runtime`` is a :class:`DockerRuntime` on the real engine. ``images`` builds tiny images
``FROM`` the ``pht-test/busybox`` image, each running one shell script as its command, pushes
them to the local registry (``PHT_DOCKER_REGISTRY``) and returns where they are, so every test
goes through a real pull. Under ``CI=true`` an unreachable engine or registry fails the test; on
a machine without them it is skipped with the reason.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest
import requests
from docker.errors import DockerException

from siteclient.runtime.docker import LABEL_SITE, DockerRuntime

REGISTRY = os.environ.get("PHT_DOCKER_REGISTRY", "127.0.0.1:5000")
BASE_REPOSITORY = f"{REGISTRY}/pht-test/busybox"
BASE_IMAGE = f"{BASE_REPOSITORY}:latest"
# One label per test session: the cleanup check and remove_stale() must never touch the
# containers of another test run sharing this engine.
TEST_SITE = f"pytest-site-{os.getpid()}"
HINT = "run `.ci/services.sh start` (as root) to start the engine, the registry and the image"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"CI=true but {reason}; {HINT}", pytrace=False)
    pytest.skip(f"{reason}; {HINT}")


@dataclass(frozen=True)
class BuiltImage:
    repository: str
    tag: str
    digest: str
    image_id: str

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


class ImageFactory:
    """Builds and pushes ``FROM busybox`` images whose command is a shell script."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    def build(self, dockerfile: str, name: str, tag: str = "latest") -> BuiltImage:
        repository = f"{REGISTRY}/pht-test/rt-{name}"
        image, _ = self.client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()),
            tag=f"{repository}:{tag}",
            rm=True,
            forcerm=True,
            labels={"org.pht.test-image": "runtime"},
        )
        digest = None
        for message in self.client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in message:
                raise RuntimeError(f"push {repository}:{tag}: {message['error']}")
            aux = message.get("aux") or {}
            digest = aux.get("Digest", digest)
        assert digest, f"push of {repository}:{tag} reported no digest"
        return BuiltImage(repository=repository, tag=tag, digest=digest, image_id=image.id)

    def script(self, name: str, script: str, *, tag: str = "latest", extra: str = "") -> BuiltImage:
        """An image whose command is ``sh -c SCRIPT``."""
        command = json.dumps(["/bin/sh", "-c", script])
        return self.build(f"FROM {BASE_IMAGE}\n{extra}CMD {command}\n", name, tag)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except (DockerException, requests.RequestException) as exc:
        _unavailable(f"Docker engine unreachable ({exc})")
    try:
        client.images.pull(BASE_REPOSITORY, tag="latest")
    except (DockerException, requests.RequestException) as exc:
        _unavailable(f"test image {BASE_IMAGE} cannot be pulled ({exc})")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> ImageFactory:
    return ImageFactory(docker_client)


@pytest.fixture
def runtime(docker_client: docker.DockerClient) -> Iterator[DockerRuntime]:
    """The runtime under test; afterwards no container of the test site may be left."""
    yield DockerRuntime(docker_client)
    left = docker_client.containers.list(all=True, filters={"label": f"{LABEL_SITE}={TEST_SITE}"})
    for container in left:
        container.remove(force=True)
    assert not left, f"containers left behind: {[c.short_id for c in left]}"
