"""The Docker fixtures of the site-client tests, shared with the deployment image tests."""

from tests.siteclient.conftest import docker_client

__all__ = ["docker_client"]
