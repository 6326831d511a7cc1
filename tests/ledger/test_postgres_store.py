"""The ledger on the PostgreSQL store (``ledger.store.postgres``) against a real database."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ledger.bodies import Cancel, Task
from ledger.checkpoint import parse_verifier_key, verify_checkpoint
from ledger.errors import (
    BlobError,
    CorruptStoreError,
    DamagedBlobError,
    DamagedEntryError,
    RuleViolation,
    StoreError,
)
from ledger.events import SignedEvent
from ledger.merkle import verify_inclusion
from ledger.store.ledger import Ledger
from ledger.store.postgres.entries import PostgresStore
from ledger.store.postgres.frames import frame
from tests.ledger.factory import World
from tests.postgres_db import fresh_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    with fresh_schema() as dsn:
        yield dsn


def _task(world: World, n: int = 0) -> SignedEvent:
    return world.sign("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": n}))


@pytest.fixture
def world() -> World:
    return World()


def _create(tmp_path: Path, world: World, dsn: str, **kw: object) -> Ledger:
    return Ledger.create(
        tmp_path / "data",
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        clock=world.clock,
        store_url=dsn,
        **kw,  # type: ignore[arg-type]
    )


def _open(tmp_path: Path, world: World, dsn: str) -> Ledger:
    return Ledger.open(tmp_path / "data", log_key=world.log_key, clock=world.clock, store_url=dsn)


def _sql(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return list(cur.fetchall()) if cur.description else []


def test_appends_are_committed_rows_with_dense_indexes(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    ledger = _create(tmp_path, world, pg_dsn)
    try:
        events = [_task(world, n) for n in range(5)]
        results = [ledger.append(e) for e in events]
        again = ledger.append(events[2])  # a repeated post: the same entry, nothing written
        assert not again.created and again.entry.index == results[2].entry.index
        rows = _sql(pg_dsn, "SELECT idx, payload FROM pht_entries ORDER BY idx")
        assert [r[0] for r in rows] == list(range(6))
        assert [bytes(r[1]) for r in rows[1:]] == [r.entry.canonical for r in results]  # type: ignore[call-overload]
        assert _sql(pg_dsn, "SELECT size FROM pht_log") == [(6,)]
        cp = verify_checkpoint(
            ledger.checkpoint(), parse_verifier_key(world.log_key_text), origin=world.origin
        )
        assert cp.size == 6 and cp.root == ledger.root()
    finally:
        ledger.close()


def test_concurrent_appends_all_land_once_in_order(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    ledger = _create(tmp_path, world, pg_dsn)
    events = [_task(world, n) for n in range(40)]
    try:
        threads = [
            threading.Thread(target=lambda e=e: [ledger.append(e), ledger.append(e)])
            for e in events
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ledger.size == 41
        ids = {ledger.entry(i).event.event.id for i in range(1, 41)}
        assert ids == {e.event.id for e in events}
        for i in range(41):  # the chain links each entry to the one before
            if i:
                assert ledger.entry(i).prev == ledger.entry(i - 1).hash
            proof = ledger.inclusion_proof(i, 41)
            verify_inclusion(ledger.entry(i).leaf_hash, i, 41, proof, ledger.root())
    finally:
        ledger.close()


def test_reopen_recovers_the_same_root_and_keeps_the_rules(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    ledger = _create(tmp_path, world, pg_dsn, snapshot_every=3)
    events = [_task(world, n) for n in range(7)]
    for e in events:
        ledger.append(e)
    root = ledger.root()
    ledger.close()
    reopened = _open(tmp_path, world, pg_dsn)
    try:
        assert (reopened.size, reopened.root()) == (8, root)
        assert not reopened.append(events[3]).created
        assert reopened.append(_task(world, 99)).entry.index == 8
        with pytest.raises(RuleViolation):  # the state came back too: mallory is no member
            stranger = Task(image="x/y:1", sites=("site-a",), config={})
            reopened.append(world.sign("mallory", stranger))
    finally:
        reopened.close()


def test_two_processes_append_to_one_ledger_in_one_order(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    first = _create(tmp_path, world, pg_dsn)
    second = Ledger.open(
        tmp_path / "replica", log_key=world.log_key, clock=world.clock, store_url=pg_dsn
    )
    events = [_task(world, n) for n in range(30)]
    try:
        threads = [
            threading.Thread(target=(first, second)[n % 2].append, args=(e,))
            for n, e in enumerate(events)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # The same event posted to both: one entry, the same answer from each.
        assert not second.append(events[0]).created
        assert first.append(events[0]).entry == second.append(events[0]).entry
        assert second.wait_for(30, timeout=10) and first.wait_for(30, timeout=10)
        assert first.size == second.size == 31
        assert first.root() == second.root()
        assert first.checkpoint() == second.checkpoint()  # deterministic: the same signed note
        rows = _sql(pg_dsn, "SELECT idx FROM pht_entries ORDER BY idx")
        assert [r[0] for r in rows] == list(range(31))
        assert {first.entry(i).event.event.id for i in range(1, 31)} == {e.event.id for e in events}
    finally:
        first.close()
        second.close()


def test_one_process_per_data_directory_whatever_the_store(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    ledger = _create(tmp_path, world, pg_dsn)
    try:
        with pytest.raises(StoreError, match="already open"):
            _open(tmp_path, world, pg_dsn)  # a replica needs a data directory of its own
    finally:
        ledger.close()
    _open(tmp_path, world, pg_dsn).close()


def test_a_replica_judges_events_against_what_others_appended(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    """A result for a task appended through another process is accepted at once (the rules see
    the task), and a second cancel of it is refused (the rules see the first)."""
    first = _create(tmp_path, world, pg_dsn)
    second = Ledger.open(
        tmp_path / "replica", log_key=world.log_key, clock=world.clock, store_url=pg_dsn
    )
    try:
        posted = first.append(_task(world, 1))
        cancel = world.sign("alice", Cancel(task=posted.entry.event.event.id, reason="done"))
        assert second.append(cancel).entry.index == 2
        again = world.sign("alice", Cancel(task=posted.entry.event.event.id, reason="twice"))
        with pytest.raises(RuleViolation):
            first.append(again)
    finally:
        first.close()
        second.close()


def test_create_refuses_an_existing_ledger_and_open_an_empty_database(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    with pytest.raises(StoreError, match="holds no ledger"):
        _open(tmp_path, world, pg_dsn)
    _create(tmp_path, world, pg_dsn).close()
    with pytest.raises(StoreError, match="already holds a ledger"):
        _create(tmp_path / "other", world, pg_dsn)


def test_a_write_behind_the_writers_back_is_refused_not_overwritten(pg_dsn: str) -> None:
    store = PostgresStore.open(pg_dsn, create=True)
    try:
        store.append_batch([b"first"])
        _sql(
            pg_dsn,
            "INSERT INTO pht_entries VALUES (1, 17, 'x', sha256('x')); "
            "UPDATE pht_log SET size = 2, bytes = 30",
        )
        with pytest.raises(StoreError, match="holds 2 entries, not the 1 this process wrote"):
            store.append_batch([b"second"])
        assert _sql(pg_dsn, "SELECT idx, payload FROM pht_entries ORDER BY idx") == [
            (0, b"first"),
            (1, b"x"),
        ]
        assert store.count == 2  # it re-read what is committed
    finally:
        store.close()


def test_a_damaged_row_is_named_on_open(tmp_path: Path, world: World, pg_dsn: str) -> None:
    ledger = _create(tmp_path, world, pg_dsn, snapshot_every=10**6)
    for n in range(3):
        ledger.append(_task(world, n))
    ledger.close()
    (tmp_path / "data" / "SNAPSHOT").unlink()  # replay every entry
    _sql(pg_dsn, "UPDATE pht_entries SET payload = payload || '\\x20'::bytea WHERE idx = 2")
    with pytest.raises(DamagedEntryError, match="entry 2"):
        _open(tmp_path, world, pg_dsn)


def test_offsets_and_digest_follow_the_framed_entries(pg_dsn: str, tmp_path: Path) -> None:
    store = PostgresStore.open(pg_dsn, create=True)
    try:
        payloads = [b"a" * n for n in (1, 50, 7)]
        store.append_batch(payloads[:2])
        assert store.start_digest(1) == hashlib.sha256(frame(payloads[0])).hexdigest()
        store.append_batch(payloads[2:])
        whole = b"".join(frame(p) for p in payloads)
        assert store.digest() == (len(whole), hashlib.sha256(whole).hexdigest())
        assert [store.offset(i) for i in range(4)] == [0, 13, 75, 94]
        assert store.read_range(0, 3) == payloads
        with pytest.raises(StoreError, match="out of range"):
            store.read_range(2, 4)
    finally:
        store.close()


def test_blobs_live_in_the_database(tmp_path: Path, world: World, pg_dsn: str) -> None:
    ledger = _create(tmp_path, world, pg_dsn)
    try:
        data = b"results " * 1000
        sha = hashlib.sha256(data).hexdigest()
        assert ledger.blobs.put_stream([data[:10], data[10:]], sha, 10_000) == (sha, len(data))
        assert ledger.blobs.put(data) == sha  # again: a no-op
        assert ledger.blobs.exists(sha) and ledger.blobs.size(sha) == len(data)
        assert ledger.blobs.open_verified(sha).read() == data
        assert not (tmp_path / "data" / "objects").exists() or not any(
            (tmp_path / "data" / "objects").rglob(sha[2:])
        )
        with pytest.raises(BlobError, match="expected sha256"):
            ledger.blobs.put(b"other", sha)
        with pytest.raises(BlobError, match="at most 5 bytes"):
            ledger.blobs.put(b"toolong", max_size=5)
        _sql(pg_dsn, "UPDATE pht_blobs SET data = 'x'::bytea")
        with pytest.raises(DamagedBlobError):
            ledger.blobs.open_verified(sha)
        ledger.blobs.put(data)  # the right bytes again replace the damaged copy
        assert ledger.blobs.open_verified(sha).read() == data
    finally:
        ledger.close()


def test_the_checkpoint_lives_in_the_database_and_guards_against_lost_entries(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    ledger = _create(tmp_path, world, pg_dsn)
    for n in range(3):
        ledger.append(_task(world, n))
    ledger.close()
    [(note,)] = _sql(pg_dsn, "SELECT checkpoint FROM pht_log")
    cp = verify_checkpoint(
        bytes(note),  # type: ignore[arg-type]
        parse_verifier_key(world.log_key_text),
        origin=world.origin,
    )
    assert cp.size == 4
    assert not (tmp_path / "data" / "checkpoint").exists()
    # A database restored from before the last append: the signed checkpoint says more.
    (tmp_path / "data" / "SNAPSHOT").unlink()
    _sql(pg_dsn, "DELETE FROM pht_entries WHERE idx = 3")
    [(end,)] = _sql(pg_dsn, "SELECT start + 12 + length(payload) FROM pht_entries WHERE idx = 2")
    _sql(pg_dsn, "UPDATE pht_log SET size = 3, bytes = %s", (end,))
    with pytest.raises(CorruptStoreError, match="acknowledged entries are missing"):
        _open(tmp_path, world, pg_dsn)


def test_nonces_commit_without_waiting_for_the_flush_but_appends_wait_for_it(
    tmp_path: Path, world: World, pg_dsn: str
) -> None:
    """Every signed request records a nonce; only an acknowledged append must be on disk."""
    ledger = _create(tmp_path, world, pg_dsn)
    try:
        assert ledger.nonces is not None
        assert ledger.nonces.first_use("k", "n", until=100.0, now=0.0)
        assert not ledger.nonces.first_use("k", "n", until=100.0, now=1.0)
        settings = {
            "nonces": ledger.nonces._session.get(),
            "appends": ledger._store._write.get(),  # type: ignore[attr-defined]
        }
        shown = {
            name: conn.execute("SHOW synchronous_commit").fetchone()[0]
            for name, conn in settings.items()
        }
        assert shown == {"nonces": "off", "appends": "on"}
    finally:
        ledger.close()


def test_the_newest_entries_are_read_from_memory_and_agree_with_the_database(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long-polls at the head read the newest entries from memory (no query); every range,
    across the edge of what is kept, reads the database's bytes; once a write's outcome is
    unknown, memory is emptied and reads go to the database again."""
    monkeypatch.setattr("ledger.store.postgres.entries.RECENT", 8)
    store = PostgresStore.open(pg_dsn, create=True)
    try:
        payloads = [f"entry {n}".encode() for n in range(15)]
        for first in range(0, 15, 4):
            store.append_batch(payloads[first : first + 4])
        rows = _sql(pg_dsn, "SELECT payload FROM pht_entries ORDER BY idx")
        assert [bytes(p) for (p,) in rows] == payloads  # type: ignore[arg-type]
        queries: list[str] = []
        real = store._query

        def counted(sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
            queries.append(sql)
            return real(sql, params)

        monkeypatch.setattr(store, "_query", counted)
        assert store.read_range(7, 15) == payloads[7:15]  # the newest 8: from memory
        assert store.read_range(15, 15) == []
        assert queries == []
        for start in range(15):
            for stop in range(start, 16):
                assert store.read_range(start, stop) == payloads[start:stop]
        assert queries  # the older ones came from the database

        store._stale = True  # as after a write whose COMMIT went unanswered
        _sql(pg_dsn, "UPDATE pht_entries SET payload = 'x', sha256 = sha256('x') WHERE idx = 14")
        queries.clear()
        assert store.read_range(14, 15) == [b"x"]  # memory was emptied: the database answers
        assert queries
    finally:
        store.close()
