"""``pht init``: a new data directory, its log key and its genesis."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from cli.main import main
from crypto import SigningKey
from ledger.bodies import Consortium
from ledger.checkpoint import verifier_key
from ledger.store.ledger import Ledger

ORIGIN = "pht.example/cli"


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    keys = {}
    for name in ("admin", "alice", "site-a"):
        signing_key = SigningKey.generate()
        signing_key.save(tmp_path / f"{name}.key")
        (tmp_path / f"{name}.pub").write_bytes(signing_key.public.pem())
        keys[name] = signing_key
    members = [
        {"name": "alice", "role": "researcher", "public_key": keys["alice"].public.b64()},
        {"name": "site-a", "role": "site", "public_key_file": "site-a.pub"},
    ]
    (tmp_path / "members.json").write_text(json.dumps(members))
    return {
        "dir": tmp_path,
        "data": tmp_path / "data",
        "admin_key": tmp_path / "admin.key",
        "members": tmp_path / "members.json",
    }


def init(setup: dict[str, Path], *extra: str) -> int:
    return main(
        [
            "-q",
            "init",
            "--data",
            str(setup["data"]),
            "--origin",
            ORIGIN,
            "--admin-key",
            str(setup["admin_key"]),
            "--members",
            str(setup["members"]),
            *extra,
        ]
    )


def test_init_writes_log_key_and_genesis(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(setup, "--name", "Test consortium") == 0
    summary = json.loads(capsys.readouterr().out)
    log_key_file = setup["data"] / "log.key"
    assert stat.S_IMODE(log_key_file.stat().st_mode) == 0o600
    log_key = SigningKey.load(log_key_file)
    ledger = Ledger.open(setup["data"], log_key=log_key)
    try:
        assert ledger.size == 1
        genesis = ledger.entry(0)
        body = genesis.event.event.body
        assert isinstance(body, Consortium)
        assert body.name == "Test consortium" and body.origin == ORIGIN
        assert body.log_key == verifier_key(ORIGIN, log_key.public) == summary["log_key"]
        digest = hashlib.sha256(log_key.public.raw).hexdigest()  # what sites and browsers show
        assert summary["log_key_fingerprint"] == " ".join(
            digest[i : i + 4] for i in range(0, 64, 4)
        )
        assert [(m.name, m.role.value) for m in body.members] == [
            ("admin", "admin"),
            ("alice", "researcher"),
            ("site-a", "site"),
        ]
        admin = SigningKey.load(setup["admin_key"])
        assert genesis.event.event.author == admin.key_id
        assert summary["genesis_hash"] == genesis.hash
    finally:
        ledger.close()


def test_init_carries_each_members_organization(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    reviewer = SigningKey.generate().public.b64()
    members = json.loads(setup["members"].read_text())
    members[0]["organization"] = "umc-a"
    members.append(
        {"name": "rhea", "role": "reviewer", "public_key": reviewer, "organization": "umc-b"}
    )
    setup["members"].write_text(json.dumps(members))
    assert init(setup) == 0
    ledger = Ledger.open(setup["data"], log_key=SigningKey.load(setup["data"] / "log.key"))
    try:
        body = ledger.entry(0).event.event.body
        assert isinstance(body, Consortium)
        assert [(m.name, m.role.value, m.org) for m in body.members] == [
            ("admin", "admin", None),  # no org: its own organization
            ("alice", "researcher", "umc-a"),
            ("site-a", "site", None),
            ("rhea", "reviewer", "umc-b"),
        ]
    finally:
        ledger.close()


def test_init_refuses_to_overwrite_a_ledger(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(setup) == 0
    before = (setup["data"] / "entries.log").read_bytes()
    capsys.readouterr()
    assert init(setup) == 1
    err = capsys.readouterr().err
    assert err.startswith("pht: error: ") and "refusing to overwrite" in err
    assert err.count("\n") == 1
    assert (setup["data"] / "entries.log").read_bytes() == before


def test_init_refuses_admin_listed_with_another_role(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    admin = SigningKey.load(setup["admin_key"])
    setup["members"].write_text(
        json.dumps([{"name": "boss", "role": "researcher", "public_key": admin.public.b64()}])
    )
    assert init(setup) == 1
    assert "expected role admin" in capsys.readouterr().err
    assert not setup["data"].exists()


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ("{", "not valid JSON"),
        ('{"name": "x"}', "expected a JSON array"),
        ('[{"name": "x", "role": "site"}]', "missing public_key or public_key_file"),
        ('[{"name": "x", "role": "pilot", "public_key": "%s"}]', "role"),
        ('[{"name": "Bad Name", "role": "site", "public_key": "%s"}]', "name"),
        ('[{"name": "x", "role": "site", "public_key": "bm90IGEga2V5"}]', "32 raw"),
        (
            '[{"name": "x", "role": "reviewer", "public_key": "%s", "organization": "Not Org"}]',
            "organization",
        ),
        ('[{"name": "x", "role": "reviewer", "public_key": "%s", "team": "a"}]', "'team'"),
    ],
    ids=[
        "broken-json",
        "not-array",
        "no-key",
        "bad-role",
        "bad-name",
        "short-key",
        "bad-org",
        "extra",
    ],
)
def test_init_refuses_malformed_members(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], members: str, reason: str
) -> None:
    some_key = SigningKey.generate().public.b64()
    setup["members"].write_text(members.replace("%s", some_key))
    assert init(setup) == 1
    err = capsys.readouterr().err
    assert err.startswith("pht: error: ") and reason in err
    assert not setup["data"].exists()


def test_init_refuses_a_readable_admin_key(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    os.chmod(setup["admin_key"], 0o644)
    assert init(setup) == 1
    assert "0644" in capsys.readouterr().err


def test_usage_errors_return_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--data", "x"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
