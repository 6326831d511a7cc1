"""Load with faults: 8 clients append while the registry is SIGKILLed and restarted.

Afterwards every event a client got a 2xx for is in the ledger at the index and hash it was told,
no event is in the ledger twice (the clients' retries re-post the same signed event, which the
registry appends once), the whole ledger verifies, and every checkpoint a client saw is consistent
with the final tree.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from api.client.registry import Client
from api.client.transport import RetryPolicy
from api.errors import ApiError
from crypto import SigningKey
from ledger.bodies import Task
from ledger.checkpoint import parse_verifier_key, verify_checkpoint
from ledger.events import SignedEvent, new_event
from ledger.merkle import verify_consistency
from ledger.store.ledger import Ledger
from ledger.verify import verify_ledger
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World

CLIENTS = 8
KILLS = 4
DURATION_LIMIT = 60.0


@dataclass
class Seen:
    acknowledged: dict[str, tuple[int, str]] = field(default_factory=dict)  # event id: index, hash
    attempted: set[str] = field(default_factory=set)
    checkpoints: list[bytes] = field(default_factory=list)
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _appender(url: str, key: SigningKey, origin: str, stop: threading.Event, seen: Seen) -> None:
    retry = RetryPolicy(attempts=40, backoff=0.05, max_backoff=0.5)
    with Client(url, key, retry=retry, timeout=10) as client:
        n = 0
        while not stop.is_set():
            body = Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": n})
            signed = SignedEvent.sign(new_event(body, ledger=origin, author=key.key_id), key)
            n += 1
            with seen.lock:
                seen.attempted.add(signed.event.id)
            try:
                appended = client.post_event(signed)
                note = client.checkpoint() if n % 10 == 0 else None
            except ApiError:
                with seen.lock:
                    seen.failures += 1
                continue
            with seen.lock:
                seen.acknowledged[appended.event_id] = (appended.index, appended.hash)
                if note is not None:
                    seen.checkpoints.append(note)


@pytest.mark.slow
def test_acknowledged_appends_survive_sigkill_restarts(tmp_path: Path) -> None:
    world = World()
    data = init_registry(tmp_path, world)
    registry = RegistryProcess(data, threads=12)
    registry.start()
    started = time.monotonic()
    stop = threading.Event()
    seen = Seen()
    clients = [
        threading.Thread(
            target=_appender, args=(registry.url, world.keys["alice"], world.origin, stop, seen)
        )
        for _ in range(CLIENTS)
    ]
    rng = random.Random(7)
    try:
        for thread in clients:
            thread.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 2.5))
            registry.kill()
            time.sleep(rng.uniform(0.05, 0.3))
            registry.start()
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
        registry.stop()
    assert all(not thread.is_alive() for thread in clients)
    assert time.monotonic() - started < DURATION_LIMIT

    ledger = Ledger.open(data, log_key=SigningKey.load(data / "log.key"))
    try:
        size = ledger.size
        entries = ledger.entries_bytes(0, size)
        verified = verify_ledger(entries)
        assert verified.tree.size == size
        ids = [e.event.event.id for e in (ledger.entry(i) for i in range(1, size))]
        assert len(ids) == len(set(ids)), "an event was appended twice"
        assert set(ids) <= seen.attempted
        assert len(seen.acknowledged) > 100, "the load was too light to mean anything"
        for event_id, (index, entry_hash) in seen.acknowledged.items():
            entry = ledger.entry(index)
            assert entry.event.event.id == event_id
            assert entry.hash == entry_hash

        final = verify_checkpoint(
            ledger.checkpoint(), parse_verifier_key(ledger.log_key), origin=world.origin
        )
        assert final.size == size
        assert seen.checkpoints
        for note in seen.checkpoints:
            cp = verify_checkpoint(note, parse_verifier_key(ledger.log_key), origin=world.origin)
            proof = ledger.consistency_proof(cp.size, final.size)
            verify_consistency(cp.size, final.size, cp.root, final.root, proof)
    finally:
        ledger.close()
