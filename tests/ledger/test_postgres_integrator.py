"""One integrator among the processes sharing a PostgreSQL ledger (DESIGN 10,
``ledger.store.postgres.election``): it alone signs checkpoints; the others serve what it
published; when it goes, another takes over; with none, appends are pushed back, not queued;
witness cosignatures taken by one are served by all."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ledger.bodies import Task
from ledger.checkpoint import Checkpoint, sign_checkpoint, unverified_size
from ledger.cosignature import cosign
from ledger.errors import BacklogError
from ledger.events import SignedEvent
from ledger.store.ledger import Ledger
from ledger.store.postgres.entries import PostgresStore
from tests.ledger.factory import World
from tests.postgres_db import fresh_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema() as made:
        yield made


@pytest.fixture
def world() -> World:
    return World()


def _task(world: World, n: int) -> SignedEvent:
    return world.sign("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": n}))


def _pair(tmp_path: Path, world: World, dsn: str) -> tuple[Ledger, Ledger]:
    first = Ledger.create(
        tmp_path / "a",
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        clock=world.clock,
        store_url=dsn,
    )
    second = Ledger.open(tmp_path / "b", log_key=world.log_key, clock=world.clock, store_url=dsn)
    return first, second


def _published(dsn: str) -> tuple[int | None, bytes | None]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT checkpoint_size, checkpoint FROM pht_log").fetchone()
    assert row is not None
    return row[0], None if row[1] is None else bytes(row[1])


def _until(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_one_integrator_signs_and_the_other_serves_what_it_published(
    tmp_path: Path, world: World, dsn: str
) -> None:
    first, second = _pair(tmp_path, world, dsn)
    try:
        assert (first.integrating, second.integrating) == (True, False)
        result = second.append(_task(world, 1))  # through the one that does not sign
        # It returned once a published checkpoint covered the entry, and serves exactly it.
        assert second.size == 2 and unverified_size(second.checkpoint()) == 2
        assert _until(lambda: _published(dsn)[0] == 2)
        assert second.checkpoint() == _published(dsn)[1] == first.checkpoint()
        assert second.entry(result.entry.index).hash == result.entry.hash
    finally:
        second.close()
        first.close()


def test_another_takes_over_when_the_integrator_goes(
    tmp_path: Path, world: World, dsn: str
) -> None:
    first, second = _pair(tmp_path, world, dsn)
    try:
        first.append(_task(world, 1))
    finally:
        first.close()  # its session ends, and with it the lock (as a SIGKILL would end it)
    try:
        assert _until(lambda: second.integrating, timeout=5)
        appended = second.append(_task(world, 2))
        assert appended.entry.index == 2 and second.size == 3
        assert _until(lambda: _published(dsn)[0] == 3)
        assert second.checkpoint() == _published(dsn)[1]
    finally:
        second.close()


def test_appends_are_pushed_back_while_no_checkpoint_is_published(
    tmp_path: Path, world: World, dsn: str
) -> None:
    first, second = _pair(tmp_path, world, dsn)
    try:
        store = second._store
        assert isinstance(store, PostgresStore)
        store.backlog_limit = 2
        # The integrator stops publishing (hung, or cut off from the database but holding the
        # lock): what the others sequence waits for a checkpoint.
        publisher = first._store._publisher  # type: ignore[attr-defined]
        publisher.offer = lambda note: None
        for n in range(3):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("ledger.store.integration.PUBLISH_WAIT", 0.1)
                second.append(_task(world, n))
        with pytest.raises(BacklogError, match="await a checkpoint"):
            second.append(_task(world, 9))
        assert _published(dsn)[0] == 1  # nothing the integrator signed was published
        del publisher.offer  # publishing again: the next checkpoint covers the backlog
        first.append(_task(world, 10))
        assert _until(lambda: _published(dsn)[0] == 5)
        assert second.append(_task(world, 9)).entry.index == 5
    finally:
        second.close()
        first.close()


def test_a_cosignature_taken_by_one_process_is_served_by_the_other(
    tmp_path: Path, dsn: str
) -> None:
    world = World(witnesses=True)
    first, second = _pair(tmp_path, world, dsn)
    try:
        size = first.size
        checkpoint = Checkpoint(origin=first.origin, size=size, root=first.root(size))
        line = cosign(checkpoint, world.witness_signer("site-a"), name="site-a", time=1_700_000_000)
        member = first.member("site-a")
        assert member is not None
        assert first.cosignatures.add(member, size, line)
        assert _until(lambda: line.encode() in second.cosigned_checkpoint())
        # The order check spans the processes: an older size is refused by the other one too.
        assert second.cosignatures.newest("site-a") == size
    finally:
        second.close()
        first.close()


def test_a_checkpoint_in_the_database_that_is_not_the_entries_is_never_served(
    tmp_path: Path, world: World, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = _pair(tmp_path, world, dsn)
    try:
        served = second.checkpoint()
        # The integrator stops publishing; an entry is committed through the other replica.
        publisher = first._store._publisher  # type: ignore[attr-defined]
        publisher.offer = lambda note: None
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("ledger.store.integration.PUBLISH_WAIT", 0.1)
            second.append(_task(world, 1))
        # Whoever can write to the database publishes a checkpoint for that size, signed with
        # the log key, over a root the entries do not have.
        forged = sign_checkpoint(
            Checkpoint(origin=world.origin, size=2, root=bytes(32)), world.log_key
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE pht_log SET checkpoint = %s, checkpoint_size = 2", (forged,))
        with caplog.at_level("ERROR", logger="ledger.store.integration"):
            assert second.checkpoint() == served  # caught up, and refused what it read
        assert second.size == 1
        assert "the published checkpoint of size 2 does not match the entries" in caplog.text
    finally:
        second.close()
        first.close()
