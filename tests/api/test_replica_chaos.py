"""Replicas on one PostgreSQL ledger behind nginx, under load from 8 clients, while the test
breaks things (DESIGN 10). SIGKILLed replicas, 20 times: nothing acknowledged is lost, nothing is
appended twice, the indexes stay dense, and every checkpoint any replica served during the run
belongs to the final tree (:mod:`tests.api.load_check`). Killing the replica that integrates the
tree and signs the checkpoints does not stop the checkpoints. PostgreSQL stopped (``fast``, then
``immediate``) and started again under the replicas, in a cluster of the test's own: they answer
503 ``store-unavailable`` while it is away and append again when it is back, without a restart."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from api.client.registry import Client
from api.errors import ApiError, ServerError
from ledger.checkpoint import unverified_size
from tests.api.load_check import ONCE, Load, check_ledger, log_verifier, settle, wait_until
from tests.api.registry_process import RegistryProcess, init_registry
from tests.api.replica_cluster import health, nginx_binary, serving
from tests.ledger.factory import World
from tests.postgres_cluster import own_cluster
from tests.postgres_db import fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

KILLS = 20
INTEGRATOR_KILLS = 4


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema() as made:
        yield made


class Killer:
    """SIGKILLs replicas and restarts each one in a thread of its own, so that the next kill
    need not wait for it; never kills the last replica standing."""

    def __init__(self, replicas: list[RegistryProcess], rng: random.Random) -> None:
        self._replicas = replicas
        self._rng = rng
        self._restarts: dict[int, threading.Thread] = {}
        self._errors: list[BaseException] = []
        self.kills = 0

    def _up(self) -> list[RegistryProcess]:
        return [r for n, r in enumerate(self._replicas) if not self._restarting(n)]

    def _restarting(self, n: int) -> bool:
        thread = self._restarts.get(n)
        return thread is not None and thread.is_alive()

    def kill_one(self) -> None:
        while len(self._up()) < 2:
            time.sleep(0.05)
        victim = self._rng.choice(self._up())
        victim.kill()
        self.kills += 1
        thread = threading.Thread(target=self._restart, args=(victim,), daemon=True)
        self._restarts[self._replicas.index(victim)] = thread
        thread.start()

    def _restart(self, victim: RegistryProcess) -> None:
        time.sleep(self._rng.uniform(0.0, 0.3))
        try:
            victim.start()
        except BaseException as exc:  # reported by join()
            self._errors.append(exc)

    def join(self) -> None:
        for thread in self._restarts.values():
            thread.join(60)
        assert not self._errors, f"a replica did not restart: {self._errors}"


def test_sigkilled_replicas_lose_nothing_acknowledged(tmp_path: Path, dsn: str) -> None:
    nginx_binary()
    world = World()
    data = init_registry(tmp_path, world, store=dsn)
    with serving(tmp_path, data, dsn, 3) as (replicas, url):
        with Load(
            [url], world.keys["alice"], world.origin, watch=[r.url for r in replicas]
        ) as load:
            killer = Killer(replicas, random.Random(17))
            while killer.kills < KILLS:
                time.sleep(0.3)
                killer.kill_one()
            killer.join()
            before = load.seen.acks()
            wait_until("posting goes on after the last restart", lambda: load.seen.acks() > before)
        settle([r.url for r in replicas])
        with Client(url, world.keys["audrey"]) as reader:
            entries = check_ledger(
                reader, load.seen, log_verifier(data, world.origin), world.origin, dsn
            )
    assert load.seen.acks() > 100, "the load was too light to mean anything"
    assert len(entries) == load.seen.acks() + 1  # the genesis and every post, once


def integrator(replicas: list[RegistryProcess]) -> RegistryProcess | None:
    """The replica whose ``/healthz`` says ``"integrator": true`` (waiting out an election), or
    None when no replica's answer has the field (every replica signs its own checkpoints)."""
    found: list[RegistryProcess | None] = []

    def answered() -> bool:
        answers = [(r, health(r.url)) for r in replicas]
        if any(a is None for _, a in answers):
            return False  # one is still starting
        if all("integrator" not in a for _, a in answers if a is not None):
            found[:] = [None]
            return True
        chosen = [r for r, a in answers if a is not None and a.get("integrator") is True]
        assert len(chosen) <= 1, "two replicas integrate at once"
        found[:] = chosen
        return bool(chosen)

    wait_until("a replica integrates", answered)
    return found[0]


def newer_checkpoint(survivors: list[RegistryProcess], load: Load, than: int) -> bool:
    """Whether a survivor serves a checkpoint larger than ``than`` (kept with the others)."""
    for survivor in survivors:
        with Client(survivor.url, retry=ONCE, timeout=5) as client:
            try:
                note = client.checkpoint()
            except ApiError:
                continue
        with load.seen.lock:
            load.seen.checkpoints.add(note)
        if unverified_size(note) > than:
            return True
    return False


def committed_entries(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pht_entries").fetchone()
    assert row is not None
    return int(row[0])


def test_checkpoints_keep_coming_when_the_integrator_is_killed(tmp_path: Path, dsn: str) -> None:
    nginx_binary()
    world = World()
    data = init_registry(tmp_path, world, store=dsn)
    rng = random.Random(29)
    with serving(tmp_path, data, dsn, 2) as (replicas, url):
        with Load(
            [url], world.keys["alice"], world.origin, watch=[r.url for r in replicas]
        ) as load:
            for _ in range(INTEGRATOR_KILLS):
                victim = integrator(replicas) or rng.choice(replicas)
                victim.kill()
                # Whatever the victim signed covers at most the entries committed by now; a
                # checkpoint beyond them was signed by a replica that took over.
                committed = committed_entries(dsn)
                survivors = [r for r in replicas if r is not victim]
                wait_until(
                    f"a checkpoint beyond {committed} entries from a replica that survived",
                    lambda c=committed, v=survivors: newer_checkpoint(v, load, c),
                )
                victim.start()
        settle([r.url for r in replicas])
        with Client(url, world.keys["audrey"]) as reader:
            check_ledger(reader, load.seen, log_verifier(data, world.origin), world.origin, dsn)


def refused_while_down(replica: RegistryProcess, load: Load) -> None:
    """A post straight to ``replica`` (one attempt) is answered 503 ``store-unavailable``."""
    signed = load.event(-2, len(load.seen.refused))
    with load.seen.lock:
        load.seen.refused.add(signed.event.id)
    with (
        Client(replica.url, load.key, retry=ONCE, timeout=20) as client,
        pytest.raises(ServerError) as refused,
    ):
        client.post_event(signed)
    assert (refused.value.status, refused.value.slug) == (503, "store-unavailable")


def test_replicas_ride_out_a_postgresql_restart(tmp_path: Path) -> None:
    with own_cluster() as cluster:
        world = World()
        data = init_registry(tmp_path, world, store=cluster.dsn)
        with serving(tmp_path, data, cluster.dsn, 2, nginx=False) as (replicas, url):
            pids = [r.proc.pid for r in replicas if r.proc is not None]
            with Load([r.url for r in replicas], world.keys["alice"], world.origin) as load:
                for replica in replicas:  # each one past its first second, whose signatures
                    load.post_to(replica.url)  # it refuses (the probes below try only once)
                for mode in ("fast", "immediate"):
                    before = load.seen.acks()
                    wait_until("posting", lambda b=before: load.seen.acks() > b + 50)
                    cluster.stop(mode)
                    for replica in replicas:
                        refused_while_down(replica, load)
                    time.sleep(2)  # the database stays away a while; the clients keep retrying
                    for replica in replicas:
                        refused_while_down(replica, load)
                    cluster.start()
                    after = load.seen.acks()
                    wait_until(
                        f"posting resumes after `pg_ctl stop -m {mode}` and a start",
                        lambda a=after: load.seen.acks() > a + 50,
                    )
                    for replica in replicas:  # each on its own, with no restart in between
                        load.post_to(replica.url)
            assert [r.proc.pid for r in replicas if r.proc is not None] == pids
            settle([r.url for r in replicas])
            with Client(url, world.keys["audrey"]) as reader:
                check_ledger(
                    reader, load.seen, log_verifier(data, world.origin), world.origin, cluster.dsn
                )
