"""``siteclient check-image`` and ``siteclient status``: what an operator sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteclient.main import main as siteclient
from tests.siteclient.conftest import ImageFactory
from tests.siteclient.site_env import SiteEnv


@pytest.fixture
def env(tmp_path: Path) -> Iterator[SiteEnv]:
    site = SiteEnv(tmp_path).start()
    yield site
    site.stop()


@pytest.mark.parametrize(
    ("image", "code", "verdict", "review"),
    [
        ("127.0.0.1:5000/pht-test/rt-hello:1", 0, "allowed: ", None),
        (
            "127.0.0.1:5000/pht-test/rt-hello:1@sha256:" + "ab" * 32,
            0,
            "allowed: ",
            "review (not required here): unknown: this site has not verified the ledger yet",
        ),
        ("evil.example/127.0.0.1:5000/pht-test/rt-hello:1", 1, "refused: ", None),
        ("127.0.0.1:5000/pht-test/rt-hello:1\n", 1, "refused: ", None),
        ("127.0.0.1:5000/pht-test/rt-hello:1; rm -rf /", 1, "refused: ", None),
        ("myconsortium/avg:1", 1, "refused: ", None),
    ],
)
def test_check_image_says_whether_and_why(
    env: SiteEnv,
    capsys: pytest.CaptureFixture[str],
    image: str,
    code: int,
    verdict: str,
    review: str | None,
) -> None:
    config = env.write_config()
    assert siteclient(["check-image", image, "--config", str(config)]) == code
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(verdict)
    assert lines[1:] == ([review] if review else [])  # a pinned digest's review state


def test_status_shows_cursor_checkpoint_and_pending_tasks(
    env: SiteEnv, images: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    image = images.script("hello", "echo hi > /pht/output/hi.txt", tag="1")
    config = env.write_config()
    env.post(image.reference)
    assert env.follow_once(config) == 0
    env.post(image.reference, {"later": True})  # not yet seen by the site
    capsys.readouterr()
    assert siteclient(["status", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["site"] == "site-a"
    assert report["cursor"] == report["checkpoint"]["size"] >= 5
    assert report["genesis"] is not None
    assert report["pending_tasks"] == []  # the first finished; the second is beyond the cursor
    assert report["cursor"] < env.client().health()
    assert siteclient(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "cursor:" in text and "entries verified" in text
