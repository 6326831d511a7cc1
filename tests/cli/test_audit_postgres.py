"""``pht audit --data DIR --store postgresql://...``: the audit of a registry whose entries,
checkpoint and blobs are in PostgreSQL (``pht init --store``), as thorough as of a data directory.

The ledger is a real registry's (:func:`tests.ledger.damage.build_registry`: tasks, results,
blobs), moved to a fresh schema with ``pht store copy``; the registry's own directory for a
database ledger keeps only its key and snapshot, so the audit is given the database."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cli.main import main as pht
from tests.ledger.damage import Registry, build_registry
from tests.ledger.factory import World
from tests.postgres_db import fresh_schema

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("registry"), World())


@pytest.fixture
def database(pristine: Registry, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The pristine ledger in a fresh schema, and a data directory that keeps only its key."""
    with fresh_schema() as dsn:
        assert pht(["-q", "store", "copy", "--from", str(pristine.data), "--to", dsn]) == 0
        data = tmp_path / "data"
        data.mkdir()
        shutil.copy(pristine.data / "log.key", data / "log.key")
        yield data, dsn


def _sql(dsn: str, sql: str, params: tuple[object, ...] = ()) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, params)


def _audit(data: Path, state: Path, *extra: str) -> int:
    return pht(["-q", "audit", "--data", str(data), "--json", "--state", str(state), *extra])


def test_audit_of_a_postgresql_ledger_verifies_entries_checkpoint_and_blobs(
    database: tuple[Path, str],
    pristine: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, dsn = database
    capsys.readouterr()
    assert _audit(data, tmp_path / "state", "--store", dsn) == 0
    out, err = capsys.readouterr()
    report = json.loads(out.splitlines()[0])
    assert report["size"] == pristine.size
    assert report["checkpoint_size"] == pristine.size  # the database's stored checkpoint
    assert "blobs: all 3 the ledger names are stored whole" in err


def test_audit_of_its_data_directory_alone_names_the_missing_store_option(
    database: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = database
    capsys.readouterr()
    assert _audit(data, tmp_path / "state") == 1
    err = capsys.readouterr().err
    assert "keeps its entries in a database (pht init --store)" in err
    assert "add --store postgresql://" in err


def test_audit_names_a_damaged_blob_in_the_database(
    database: tuple[Path, str],
    pristine: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, dsn = database
    _sql(dsn, "UPDATE pht_blobs SET data = 'x'::bytea WHERE sha256 = %s", (pristine.output_blob,))
    capsys.readouterr()
    assert _audit(data, tmp_path / "state", "--store", dsn) == 2
    err = capsys.readouterr().err
    where = "result.body.outputs[0] (out.json)"
    assert f"entry {pristine.result}: {where} names blob {pristine.output_blob}: damaged" in err
    assert "1 blob references name blobs the database does not hold whole" in err


def test_audit_names_a_damaged_entry_in_the_database(
    database: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, dsn = database
    _sql(dsn, "UPDATE pht_entries SET payload = payload || '\\x20'::bytea WHERE idx = 2")
    capsys.readouterr()
    assert _audit(data, tmp_path / "state", "--store", dsn) == 2
    assert "FAILED: entry 2: its payload does not match its stored SHA-256" in (
        capsys.readouterr().err
    )
