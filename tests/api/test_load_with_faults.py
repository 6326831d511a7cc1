"""Load with faults: 8 clients append while the registry is SIGKILLed and restarted.

Afterwards every event a client got a 2xx for is in the ledger at the index and hash it was told,
no event is in the ledger twice (the clients' retries re-post the same signed event, which the
registry appends once), the whole ledger verifies, and every checkpoint a client saw is consistent
with the final tree (:func:`tests.api.load_check.check_ledger`). The same with replicas on
PostgreSQL: test_replica_chaos.py.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from api.client.registry import Client
from tests.api.load_check import Load, check_ledger, log_verifier, wait_until
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World

KILLS = 4


@pytest.mark.slow
def test_acknowledged_appends_survive_sigkill_restarts(tmp_path: Path) -> None:
    world = World()
    data = init_registry(tmp_path, world)
    registry = RegistryProcess(data, threads=12)
    registry.start()
    rng = random.Random(7)
    try:
        with Load([registry.url], world.keys["alice"], world.origin) as load:
            for _ in range(KILLS):
                time.sleep(rng.uniform(1.0, 2.5))
                registry.kill()
                time.sleep(rng.uniform(0.05, 0.3))
                registry.start()
            before = load.seen.acks()
            wait_until("posting goes on after the last restart", lambda: load.seen.acks() > before)
        with Client(registry.url, world.keys["audrey"]) as reader:
            entries = check_ledger(
                reader, load.seen, log_verifier(data, world.origin), world.origin
            )
    finally:
        registry.stop()
    assert load.seen.acks() > 100, "the load was too light to mean anything"
    assert len(entries) == load.seen.acks() + 1  # the genesis and every post, once
