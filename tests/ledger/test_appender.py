"""The ledger's single write path against a real data directory."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ledger.bodies import Output, Result, ResultState, Task
from ledger.checkpoint import parse_verifier_key, verify_checkpoint
from ledger.errors import (
    CorruptStoreError,
    RuleViolation,
    SignatureError,
    StoreError,
    VerificationError,
)
from ledger.events import SignedEvent
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.store.entries import EntryStore
from ledger.store.ledger import Ledger
from ledger.verify import verify_ledger
from tests.ledger.factory import World


def _task(world: World, n: int = 0) -> SignedEvent:
    return world.sign("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": n}))


@pytest.fixture
def world() -> World:
    return World()


def _create(tmp_path: Path, world: World, **kw: object) -> Ledger:
    return Ledger.create(
        tmp_path / "data",
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        clock=world.clock,
        **kw,  # type: ignore[arg-type]
    )


def test_append_is_idempotent_and_checkpointed(tmp_path: Path, world: World) -> None:
    ledger = _create(tmp_path, world)
    task = _task(world)
    first = ledger.append(task)
    again = ledger.append(task)
    assert first.created and not again.created
    assert again.entry.index == first.entry.index == 1
    assert ledger.size == 2
    cp = verify_checkpoint(
        ledger.checkpoint(), parse_verifier_key(ledger.log_key), origin=world.origin
    )
    assert cp.size == 2 and cp.root == ledger.root()
    verify_inclusion(first.entry.leaf_hash, 1, 2, ledger.inclusion_proof(1, 2), cp.root)
    ledger.close()


def test_refused_events_append_nothing(tmp_path: Path, world: World) -> None:
    ledger = _create(tmp_path, world)
    result = Result(task="ab" * 32, state=ResultState.COMPLETED, outputs=())  # type: ignore[arg-type]
    with pytest.raises(RuleViolation, match="not in the ledger"):
        ledger.append(world.sign("site-a", result))
    honest = _task(world)
    forged = SignedEvent(event=honest.event, sig=world.keys["admin"].sign(b"x"))
    with pytest.raises(SignatureError):
        ledger.append(forged)
    with pytest.raises(RuleViolation, match="not a member"):
        ledger.append(world.sign("mallory", Task(image="a/b:1", sites=("site-a",), config={})))
    assert ledger.size == 1
    ledger.close()


def test_concurrent_appends_share_commits_and_all_land(tmp_path: Path, world: World) -> None:
    ledger = _create(tmp_path, world)
    events = [_task(world, n) for n in range(400)]
    results: dict[str, int] = {}

    def writer(chunk: list[SignedEvent]) -> None:
        for signed in chunk:
            results[signed.event.id] = ledger.append(signed).entry.index

    threads = [threading.Thread(target=writer, args=(events[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == list(range(1, 401))
    for event_id, index in results.items():
        assert ledger.entry(index).event.event.id == event_id
    ledger.close()


def test_reopen_keeps_everything_and_stays_consistent(tmp_path: Path, world: World) -> None:
    ledger = _create(tmp_path, world, snapshot_every=7)
    events = [_task(world, n) for n in range(20)]
    for signed in events:
        ledger.append(signed)
    old_root, old_size = ledger.root(), ledger.size
    ledger.close()
    reopened = Ledger.open(tmp_path / "data", log_key=world.log_key, clock=world.clock)
    assert reopened.size == old_size
    reopened.append(_task(world, 99))
    proof = reopened.consistency_proof(old_size, reopened.size)
    verify_consistency(old_size, reopened.size, old_root, reopened.root(), proof)
    assert reopened.append(events[3]).created is False  # duplicates still found after reopen
    assert reopened.append(events[19]).entry.index == 20
    reopened.close()


def test_recovers_without_snapshot_and_after_unclean_stop(tmp_path: Path, world: World) -> None:
    ledger = _create(tmp_path, world)
    for n in range(5):
        ledger.append(_task(world, n))
    size = ledger.size
    # No close(): as after SIGKILL, only the fsynced log and index are there.
    ledger._committer.close()
    ledger._store.close()
    reopened = Ledger.open(tmp_path / "data", log_key=world.log_key, clock=world.clock)
    assert reopened.size == size
    reopened.close()


def test_refuses_to_create_over_an_existing_ledger(tmp_path: Path, world: World) -> None:
    _create(tmp_path, world).close()
    with pytest.raises(StoreError, match="already holds a ledger"):
        _create(tmp_path, world)


def test_lost_acknowledged_entries_are_reported(tmp_path: Path, world: World) -> None:
    ledger = _create(tmp_path, world)
    for n in range(5):
        ledger.append(_task(world, n))
    ledger.close()
    with EntryStore.open(tmp_path / "data") as store:
        store.truncate(3)
    with pytest.raises(CorruptStoreError, match="acknowledged entries are missing"):
        Ledger.open(tmp_path / "data", log_key=world.log_key)


def test_verifier_names_the_entry_with_a_flipped_byte(tmp_path: Path, world: World) -> None:
    ledger = _create(tmp_path, world)
    task = ledger.append(_task(world)).entry
    outputs = (Output(name="o.txt", sha256=ledger.blobs.put(b"o"), size=1),)  # uploaded first
    for site_n in range(3):
        ledger.append(
            world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={"k": site_n}))
        )
    ledger.append(
        world.sign(
            "site-a",
            Result(task=task.event.event.id, state=ResultState.COMPLETED, outputs=outputs),
        )
    )
    records = ledger.entries_bytes(0, ledger.size)
    ledger.close()
    assert verify_ledger(records).tree.root() == verify_ledger(records, workers=2).tree.root()
    for target in (2, 5):
        bad = list(records)
        raw = bytearray(bad[target])
        raw[raw.index(b'"nonce":"') + 10] ^= 0x01  # still valid JSON, different event
        bad[target] = bytes(raw)
        for workers in (1, 2):
            with pytest.raises(VerificationError) as caught:
                verify_ledger(bad, workers=workers)
            assert caught.value.index == target, caught.value
