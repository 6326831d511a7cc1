"""What an admin (and an auditor) sees: the members file, ``pht keys new``, key files given in
the wrong place, ``pht serve``'s port, ``pht member add`` and ``pht audit``'s trust note."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from api.client.analyst import Analyst
from api.client.registry import Client
from cli.main import build_parser
from cli.main import main as pht
from crypto import SigningKey
from crypto.age import load_identity
from ledger.bodies import Consortium
from ledger.store.ledger import Ledger
from tests.api.registry_process import init_registry
from tests.cli.researcher_env import profile
from tests.ledger.factory import World
from tests.siteclient.site_env import SiteEnv


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    for name in ("admin", "ana", "site-a"):
        assert pht(["keys", "new", name, "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    return tmp_path


def _init(folder: Path, members: list[dict[str, object]], *admin_key: str) -> int:
    (folder / "members.json").write_text(json.dumps(members))
    return pht(
        [
            "-q",
            "init",
            "--data",
            str(folder / "data"),
            "--origin",
            "pht.example/ux",
            "--admin-key",
            *(admin_key or (str(folder / "admin.key"),)),
            "--members",
            str(folder / "members.json"),
        ]
    )


def test_keys_new_writes_the_age_recipient_beside_the_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pht(["keys", "new", "ana", "--dir", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    recipient = (tmp_path / "ana.age.pub").read_text().strip()
    assert recipient == load_identity(tmp_path / "ana.age").recipient.to_string()
    assert printed["encryption_key"] == recipient
    assert printed["encryption_key_file"] == str(tmp_path / "ana.age.pub")
    assert pht(["keys", "new", "--help"]) == 0
    assert "NAME.age.pub" in capsys.readouterr().out


def test_members_file_carries_encryption_keys_and_organization(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members: list[dict[str, object]] = [
        {
            "name": "ana",
            "role": "researcher",
            "public_key_file": "ana.pub",
            "encryption_key_file": "ana.age.pub",  # a recipient file
            "organization": "umc-a",
        },
        {
            "name": "site-a",
            "role": "site",
            "public_key_file": "site-a.pub",
            "encryption_key_file": "site-a.age",  # an identity: the recipient is derived
            "file_service": "http://127.0.0.1:8600",
        },
    ]
    assert _init(keys, members) == 0
    ledger = Ledger.open(keys / "data", log_key=SigningKey.load(keys / "data" / "log.key"))
    try:
        body = ledger.entry(0).event.event.body
    finally:
        ledger.close()
    assert isinstance(body, Consortium)
    found = {m.name: m for m in body.members}
    assert found["ana"].encryption_key == (keys / "ana.age.pub").read_text().strip()
    assert found["ana"].org == "umc-a"
    site_recipient = load_identity(keys / "site-a.age").recipient.to_string()
    assert found["site-a"].encryption_key == site_recipient
    assert found["site-a"].file_service == "http://127.0.0.1:8600"


def test_members_file_unknown_field_is_named_with_did_you_mean(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    member = {"name": "ana", "role": "researcher", "public_key_file": "ana.pub"}
    assert _init(keys, [{**member, "encryption_kye": "age1x"}]) == 1
    err = capsys.readouterr().err
    assert "member 0 ('ana'): unknown field 'encryption_kye'; did you mean 'encryption_key'?" in err
    assert _init(keys, [{**member, "org": "umc-a"}]) == 1
    assert "unknown field 'org'; did you mean 'organization'?" in capsys.readouterr().err
    assert not (keys / "data").exists()


def test_members_file_errors_use_the_files_own_index(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members: list[dict[str, object]] = [
        {"name": "ana", "role": "reseacher", "public_key_file": "ana.pub"},
        {"name": "site-a", "role": "site", "public_key_file": "site-a.pub"},
    ]
    assert _init(keys, members) == 1  # the admin (added first) does not shift the index
    err = capsys.readouterr().err
    assert "member 0 ('ana'): role: expected one of" in err and "'reseacher'" in err
    members[0]["role"] = "researcher"
    members[1]["encryption_key"] = "age1notakey"
    assert _init(keys, members) == 1
    assert "member 1 ('site-a'): encryption_key" in capsys.readouterr().err


def test_public_key_passed_as_private_key_names_the_fix(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members = [{"name": "ana", "role": "researcher", "public_key_file": "ana.pub"}]
    assert _init(keys, members, str(keys / "admin.pub")) == 1
    err = capsys.readouterr().err
    assert f"admin.pub is a public key; pass {keys / 'admin.key'}" in err
    assert "chmod" not in err


def test_age_identity_passed_as_signing_key_names_the_fix(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members = [{"name": "ana", "role": "researcher", "public_key_file": "ana.pub"}]
    assert _init(keys, members, str(keys / "admin.age")) == 1
    err = capsys.readouterr().err
    assert "admin.age is an age identity (it decrypts results), not a signing key" in err
    assert "PEM" not in err


def test_serve_listens_on_8555_by_default_and_a_busy_port_suggests_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build_parser().parse_args(["serve", "--data", "x"]).port == 8555
    data = init_registry(tmp_path, World())
    capsys.readouterr()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert pht(["serve", "--data", str(data), "--port", str(port)]) == 1
    assert "pass --port N" in capsys.readouterr().err


def test_member_add_carries_organization_and_encryption_key(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys, "admin")
    assert pht(["keys", "new", "bob", "--dir", str(env.tmp)]) == 0
    capsys.readouterr()
    argv = [
        "member",
        "add",
        "bob",
        "--role",
        "researcher",
        "--public-key",
        str(env.tmp / "bob.pub"),
    ]
    extra = ["--organization", "umc-b", "--encryption-key", str(env.tmp / "bob.age.pub"), "--json"]
    assert pht([*argv, *extra]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["action"] == "add" and added["name"] == "bob"
    key = env.world.keys["audrey"]
    view = Analyst(Client(env.url, key), key).ledger_view()
    assert view.members["bob"].org == "umc-b"
    assert view.members["bob"].encryption_key == (env.tmp / "bob.age.pub").read_text().strip()


def test_audit_says_when_the_genesis_was_trusted_on_first_use(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    profile(env, capsys, "audrey")
    assert pht(["audit", "--registry", env.url, "--workers", "1"]) == 0
    captured = capsys.readouterr()
    genesis = env.client().entry(0).hash
    assert "trusted on first use: the genesis was not pinned" in captured.err
    assert f"--genesis {genesis}" in captured.err
    first = captured.out.splitlines()[0]
    assert first.startswith("ledger pht.example") and first.count(env.world.origin) == 1
    assert pht(["audit", "--registry", env.url, "--json", "--genesis", genesis]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["genesis"] == genesis and report["genesis_trust"] == "pinned"
    assert "trusted on first use" not in captured.err


def test_help_texts_name_what_the_files_hold(capsys: pytest.CaptureFixture[str]) -> None:
    assert pht(["init", "--help"]) == 0
    out = capsys.readouterr().out
    assert "encryption_key_file" in out and "organization" in out
    assert pht(["task", "logs", "--help"]) == 0
    assert "--site" in capsys.readouterr().out
