"""``pht store copy``: a ledger moved from its data directory to PostgreSQL and back, verified."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cli.main import main as pht
from crypto import SigningKey
from ledger.bodies import Task
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
