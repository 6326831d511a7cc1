"""``pht store copy``: a ledger moved from its data directory to PostgreSQL and back, verified."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cli.main import main as pht
from crypto import SigningKey
from ledger.bodies import Task
from ledger.checkpoint import Checkpoint
from ledger.cosignature import cosign
from ledger.store.ledger import Ledger
from tests.api.registry_process import init_registry
from tests.ledger.damage import alter_entry
from tests.ledger.factory import World
from tests.postgres_db import fresh_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    with fresh_schema() as dsn:
        yield dsn


@pytest.fixture
def world() -> World:
    return World()


def _registry(tmp_path: Path, world: World) -> tuple[Path, bytes, str]:
    """A data directory with a few entries and a blob; its root and the blob's name."""
    data = init_registry(tmp_path, world)
    ledger = Ledger.open(data, log_key=SigningKey.load(data / "log.key"))
    try:
        blob = ledger.blobs.put(b"a config too large for an event" * 100)
        for n in range(5):
            ledger.append(
                world.sign("alice", Task(image="x/avg:1", sites=("site-a",), config={"n": n}))
            )
        root = ledger.root()
    finally:
        ledger.close()
    return data, root, blob


def _copy(source: object, target: object, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()  # what ran before (pht init's summary)
    assert pht(["-q", "store", "copy", "--from", str(source), "--to", str(target)]) == 0
    summary: dict[str, object] = json.loads(capsys.readouterr().out)
    return summary


def test_copy_to_postgresql_and_back_gives_the_same_bytes(
    tmp_path: Path, world: World, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, root, blob = _registry(tmp_path, world)
    there = _copy(data, pg_dsn, capsys)
    assert there["entries"] == 6 and there["root"] == root.hex() and there["blobs"] == 1
    assert there["checkpoint_size"] == 6
    assert there["log_bytes"] == (data / "entries.log").stat().st_size

    back = tmp_path / "back"
    again = _copy(pg_dsn, back, capsys)
    assert again == {**there, "from": again["from"], "to": str(back)}
    assert (back / "entries.log").read_bytes() == (data / "entries.log").read_bytes()
    assert (back / "checkpoint").read_bytes() == (data / "checkpoint").read_bytes()
    assert (back / "objects" / blob[:2] / blob[2:]).read_bytes() == (
        data / "objects" / blob[:2] / blob[2:]
    ).read_bytes()

    # The database serves the same ledger with the data directory's key and snapshot.
    key = SigningKey.load(data / "log.key")
    ledger = Ledger.open(data, log_key=key, store_url=pg_dsn)
    try:
        assert (ledger.size, ledger.root()) == (6, root)
        assert hashlib.sha256(ledger.blobs.open_verified(blob).read()).hexdigest() == blob
        task = world.sign("alice", Task(image="x/avg:1", sites=("site-a",), config={"n": 9}))
        assert ledger.append(task).entry.index == 6
    finally:
        ledger.close()


def test_copy_refuses_a_target_that_holds_a_ledger(
    tmp_path: Path, world: World, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _, _ = _registry(tmp_path, world)
    _copy(data, pg_dsn, capsys)
    assert pht(["-q", "store", "copy", "--from", str(data), "--to", pg_dsn]) == 1
    assert "already holds a ledger" in capsys.readouterr().err
    assert pht(["-q", "store", "copy", "--from", pg_dsn, "--to", str(data)]) == 1
    assert "already holds a ledger" in capsys.readouterr().err


def test_a_damaged_source_is_refused_before_anything_is_written(
    tmp_path: Path, world: World, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _, _ = _registry(tmp_path, world)
    alter_entry(data, 3)  # a consistent record whose event no longer matches its signature
    assert pht(["-q", "store", "copy", "--from", str(data), "--to", pg_dsn]) == 1
    assert "entry 3" in capsys.readouterr().err
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('pht_log')").fetchone() == (None,)


def test_a_served_source_is_not_copied(
    tmp_path: Path, world: World, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _, _ = _registry(tmp_path, world)
    ledger = Ledger.open(data, log_key=SigningKey.load(data / "log.key"))
    try:
        assert pht(["-q", "store", "copy", "--from", str(data), "--to", pg_dsn]) == 1
        assert "pht: error:" in capsys.readouterr().err
    finally:
        ledger.close()


def test_store_urls_that_cannot_work_are_named(
    tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _, _ = _registry(tmp_path, world)
    capsys.readouterr()
    gone = "postgresql://postgres@127.0.0.1:1/nothing"
    assert pht(["-q", "serve", "--data", str(data), "--port", "0", "--store", gone]) == 1
    assert "cannot connect to postgresql://postgres@127.0.0.1:1/nothing" in capsys.readouterr().err
    assert pht(["-q", "store", "copy", "--from", str(data), "--to", "mysql://x"]) == 1
    assert not Path("mysql:").exists()  # not taken for a directory
    assert "expected a data directory or a postgresql:// URL" in capsys.readouterr().err
    key = tmp_path / "keys" / "admin.key"
    args = ["-q", "init", "--data", str(tmp_path / "new"), "--origin", "o.example/x"]
    args += ["--admin-key", str(key), "--members", str(tmp_path / "members.json")]
    assert pht([*args, "--store", "sqlite:///x"]) == 1
    assert "expected a postgresql:// URL" in capsys.readouterr().err


def _cosigned_registry(tmp_path: Path) -> tuple[Path, World, list[str]]:
    """A data directory whose checkpoints sites a and b cosigned as witnesses (DESIGN 12)."""
    world = World(witnesses=True)
    data = tmp_path / "cosigned"
    ledger = Ledger.create(
        data, genesis=world.sign("admin", world.genesis_body()), log_key=world.log_key
    )
    lines = []
    try:
        for n, witness in enumerate(("site-a", "site-b")):
            ledger.append(
                world.sign("alice", Task(image="x/avg:1", sites=("site-a",), config={"n": n}))
            )
            checkpoint = Checkpoint(origin=ledger.origin, size=ledger.size, root=ledger.root())
            signer = world.witness_signer(witness)
            line = cosign(checkpoint, signer, name=witness, time=1_700_000_000)
            assert ledger.cosignatures.add(ledger.member(witness), ledger.size, line)
            lines.append(line)
    finally:
        ledger.close()
    world.log_key.save(data / "log.key")
    return data, world, lines


def test_witness_cosignatures_go_along_and_come_back(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, world, lines = _cosigned_registry(tmp_path)
    assert _copy(data, pg_dsn, capsys)["cosignatures"] == 2
    ledger = Ledger.open(tmp_path / "served", log_key=world.log_key, store_url=pg_dsn)
    try:  # served from the database: the newest cosigned checkpoint with its line
        assert ledger.cosigned_checkpoint().decode().endswith(lines[1] + "\n")
    finally:
        ledger.close()
    back = tmp_path / "back"
    assert _copy(pg_dsn, back, capsys)["cosignatures"] == 2
    assert (back / "cosignatures.log").read_bytes() == (data / "cosignatures.log").read_bytes()


def test_a_cosignature_that_does_not_verify_is_refused_before_anything_is_written(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _, lines = _cosigned_registry(tmp_path)
    log = data / "cosignatures.log"
    records = [json.loads(raw) for raw in log.read_text().splitlines()]
    assert records[0]["line"] == lines[0]
    name, signature = lines[0].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(signature))
    raw[-1] ^= 1  # the Ed25519 signature's last byte
    records[0]["line"] = f"{name} {base64.b64encode(raw).decode()}"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    assert pht(["-q", "store", "copy", "--from", str(data), "--to", pg_dsn]) == 1
    assert "cosignature by 'site-a' for size 2 does not verify" in capsys.readouterr().err
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('pht_log')").fetchone() == (None,)
