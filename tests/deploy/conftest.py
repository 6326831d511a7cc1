"""The Docker fixtures of the site-client tests, shared with the deployment image tests."""

from tests.siteclient.conftest import docker_client, images

__all__ = ["docker_client", "images"]
