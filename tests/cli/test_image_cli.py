"""``pht image submit|review|list|show``, ``pht member add --org`` and ``pht task post``'s review
note, through ``main(argv)`` against a real registry process and the real image registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.client.analyst import Analyst
from api.client.registry import Client
from cli.main import main as pht
from tests.ledger.factory import World
from tests.siteclient.conftest import ImageFactory
from tests.siteclient.site_env import SiteEnv


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SiteEnv]:
    monkeypatch.setenv("PHT_PROFILE", str(tmp_path / "profile.json"))
    site = SiteEnv(tmp_path, world=World(reviewers=True)).start()
    yield site
    site.stop()


def as_member(env: SiteEnv, member: str, *argv: str) -> list[str]:
    return [*argv, "--registry", env.url, "--key", str(env.tmp / "keys" / f"{member}.key")]


def test_submit_review_list_show_and_task_post_note(
    env: SiteEnv, images: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    image = images.script("climage", "echo hi > /pht/output/hi.txt", tag="2")
    submit = [
        "image",
        "submit",
        image.reference,
        "--name",
        "Greeting",
        "--version",
        "2",
        "--source",
        "https://git.example/greeting",
    ]
    assert pht(as_member(env, "alice", *submit)) == 1
    assert "is not pinned by digest" in capsys.readouterr().err
    assert pht(as_member(env, "alice", *submit, "--pin-digest")) == 0
    submission = capsys.readouterr().out.strip()
    assert len(submission) == 64

    # A reviewer of the submitter's own organization is refused by the rules, at the registry.
    review = ["image", "review", submission, "--approve", "--note", "fine"]
    assert pht(as_member(env, "rita", *review)) == 1
    assert "both are of organization 'org-a'" in capsys.readouterr().err
    pinned = f"{image.reference}@{image.digest}"
    task_post = [
        "task",
        "post",
        "--image",
        pinned,
        "--config",
        str(env.tmp / "c.json"),
        "--sites",
        "site-a",
        "--plaintext",
    ]
    (env.tmp / "c.json").write_text("{}")
    assert pht(as_member(env, "alice", *task_post)) == 0
    err = capsys.readouterr().err
    assert "is not approved (0 of 2 approvals, 0 of 2 organizations)" in err
    assert "sites that require review will refuse this task" in err

    assert pht(as_member(env, "rob", *review)) == 0
    # by digest, and by a pinned reference
    by_digest = ["image", "review", image.digest, "--approve", "--note", "read the source"]
    assert pht(as_member(env, "ruth", *by_digest)) == 0
    capsys.readouterr()

    assert pht(as_member(env, "audrey", "image", "list", "--json")) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["policy"] == [2, 2]
    [item] = listing["submissions"]
    assert (item["submission"], item["state"], item["digest"]) == (
        submission,
        "approved",
        image.digest,
    )
    assert [(a["reviewer"], a["org"]) for a in item["approvals"]] == [
        ("rob", "org-b"),
        ("ruth", "org-c"),
    ]
    assert pht(as_member(env, "audrey", "image", "show", pinned)) == 0
    shown = capsys.readouterr().out
    assert "is approved (2 of 2 approvals, 2 of 2 organizations)" in shown
    assert "approve  ruth (org-c): read the source" in shown

    assert pht(as_member(env, "alice", *task_post)) == 0
    captured = capsys.readouterr()
    assert "review" not in captured.err and len(captured.out.strip()) == 64
    # a tag alone never passes review
    task_post[3] = image.reference
    assert pht(as_member(env, "alice", *task_post)) == 0
    assert "is not pinned by digest" in capsys.readouterr().err
    assert pht(as_member(env, "alice", *task_post, "--no-review-check")) == 0
    assert "pinned" not in capsys.readouterr().err

    # revoking: only once approved, and then it stays blocked
    revoke = ["image", "review", submission, "--revoke", "--note", "leaks row counts"]
    assert pht(as_member(env, "ray", *revoke)) == 0
    assert pht(as_member(env, "rick", *review)) == 1
    assert "it stays blocked" in capsys.readouterr().err
    assert pht(as_member(env, "audrey", "image", "show", submission, "--json")) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "revoked"


def test_member_add_with_an_organization(
    env: SiteEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pht(["keys", "new", "carl", "--dir", str(tmp_path)]) == 0
    add = [
        "member",
        "add",
        "carl",
        "--role",
        "reviewer",
        "--public-key",
        str(tmp_path / "carl.pub"),
    ]
    assert pht(as_member(env, "admin", *add, "--org", "umc-d")) == 0
    assert "add carl (reviewer)" in capsys.readouterr().out
    key = env.world.keys["audrey"]
    view = Analyst(Client(env.url, key), key).ledger_view()
    assert view.members["carl"].org == "umc-d"
    assert view.members["carl"].organization == "umc-d"
    assert view.members["admin"].organization == "@admin"  # no org: its own
    assert (
        pht(
            as_member(
                env,
                "admin",
                "member",
                "add",
                "dora",
                "--role",
                "reviewer",
                "--public-key",
                str(tmp_path / "carl.pub"),
                "--org",
                "Bad Org",
            )
        )
        == 1
    )
    assert "org" in capsys.readouterr().err
