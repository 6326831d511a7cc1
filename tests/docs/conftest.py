"""The Docker fixtures of the site-client tests, shared with the documentation tests."""

from tests.siteclient.conftest import docker_client

__all__ = ["docker_client"]
