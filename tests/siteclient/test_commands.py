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


PINNED_OK = "pinned form (what `pht task post --pin-digest` posts): allowed: "
PINNED_NO = "pinned form (what `pht task post --pin-digest` posts): refused: "
NO_REVIEW = "review (not required here): unknown: this site has not verified the ledger yet"


@pytest.mark.parametrize(
    ("image", "code", "expected"),
    [
        ("127.0.0.1:5000/pht-test/rt-hello:1", 0, ["allowed: ", PINNED_OK]),
        ("127.0.0.1:5000/pht-test/rt-hello:1@sha256:" + "ab" * 32, 0, ["allowed: ", NO_REVIEW]),
        ("evil.example/127.0.0.1:5000/pht-test/rt-hello:1", 1, ["refused: "]),
        ("evil.example/pht-test/rt-hello:1", 1, ["refused: ", PINNED_NO]),
        ("127.0.0.1:5000/pht-test/rt-hello:1\n", 1, ["refused: "]),
        ("127.0.0.1:5000/pht-test/rt-hello:1; rm -rf /", 1, ["refused: "]),
        ("myconsortium/avg:1", 1, ["refused: ", PINNED_NO]),
    ],
)
def test_check_image_says_whether_and_why(
    env: SiteEnv,
    capsys: pytest.CaptureFixture[str],
    image: str,
    code: int,
    expected: list[str],
) -> None:
    config = env.write_config()
    assert siteclient(["check-image", image, "--config", str(config)]) == code
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), line


def test_check_image_answers_for_pinned_form(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 1: a literal pattern allows `repo:tag`, but `--pin-digest` posts
    `repo:tag@sha256:...`, which it refuses; check-image says so, names the fix, exits 1."""
    literal = r"127\.0\.0\.1:5000/pht-test/busybox:latest"
    config = env.write_config(allowed_images=[literal])
    image = "127.0.0.1:5000/pht-test/busybox:latest"
    assert siteclient(["check-image", image, "--config", str(config)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("allowed: ")
    assert lines[1].startswith(PINNED_NO)
    assert lines[2] == (
        "  fix: append (@sha256:[0-9a-f]{64})? to pattern "
        f"{literal!r} in allowed_images, i.e. '{literal}(@sha256:[0-9a-f]{{64}})?', then send "
        "the site client SIGHUP (or restart it)"
    )
    # the fix works: with it, both forms are allowed
    config = env.write_config(allowed_images=[literal + "(@sha256:[0-9a-f]{64})?"])
    assert siteclient(["check-image", image, "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[1].startswith(PINNED_OK)


def test_check_image_at_a_digest_only_site_answers_for_the_pinned_form(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    config = env.write_config(require_digest=True)
    image = "127.0.0.1:5000/pht-test/rt-hello:1"
    assert siteclient(["check-image", image, "--config", str(config)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("refused: ") and "runs only images pinned by digest" in lines[0]
    assert lines[1].startswith(PINNED_OK)


@pytest.mark.parametrize(
    ("pattern", "shown", "suggested"),
    [
        ("127\\.0\\.0\\.1:5000/pht-test/*", "'/*'", "'127\\.0\\.0\\.1:5000/pht-test/.*'"),
        ("myconsortium/avg:*", "':*'", "'myconsortium/avg:.*'"),
        ("*/avg:1", "'*'", None),  # not even a regex: the config refuses it
        ("myconsortium/avg:1.?", None, None),  # a regex (optional character): no warning
        ("myconsortium/[a-z]*:.*", None, None),
    ],
)
def test_glob_pattern_warns(
    env: SiteEnv,
    capsys: pytest.CaptureFixture[str],
    pattern: str,
    shown: str | None,
    suggested: str | None,
) -> None:
    """Finding 1: `repo/*` was silently accepted and matched nothing."""
    config = env.write_config(allowed_images=[pattern])
    code = siteclient(["check-image", "myconsortium/avg:1", "--config", str(config)])
    err = capsys.readouterr().err
    if pattern.startswith("*"):
        assert code == 1 and "not a valid regular expression" in err
        return
    glob = [line for line in err.splitlines() if "looks like a glob" in line]
    if shown is None:
        assert glob == []
        return
    assert len(glob) == 1
    assert f"looks like a glob ({shown})" in glob[0]
    assert "regular expressions matched in full" in glob[0]
    assert f"e.g. {suggested}" in glob[0]


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


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ([], "5 this site was revoked"),
        (["follow"], '5 this site was revoked ("revoked at entry N")'),
        (["init"], "exit codes: 0 written"),
        (["check-config"], "exit codes: 0 every check passed"),
        (["check-image"], "append\n(@sha256:[0-9a-f]{64})? to the pattern"),
    ],
)
def test_help_gives_examples_and_exit_codes(
    capsys: pytest.CaptureFixture[str], command: list[str], needle: str
) -> None:
    """The walkthrough found no example or exit code in any --help."""
    assert siteclient([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert needle in out
    assert "\n  siteclient " in out  # an example command line
