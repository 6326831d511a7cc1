"""Fixtures of the CLI tests: the site-client tests' Docker fixtures, and ``env``, a running
registry with sites (``SiteEnv``) whose profile and state stay in the test's own folder. A module
that needs another world defines its own ``env``."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.siteclient.conftest import docker_client, images
from tests.siteclient.site_env import SiteEnv

__all__ = ["docker_client", "env", "images"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SiteEnv]:
    monkeypatch.setenv("PHT_PROFILE", str(tmp_path / "profile.json"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))
    site = SiteEnv(tmp_path).start()
    yield site
    site.stop()
