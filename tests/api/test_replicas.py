"""Several ``pht serve`` processes on one PostgreSQL ledger (DESIGN 10): appends through any of
them land once, densely, in one order; a follower long-polling one replica wakes when another
appends; a signed request replayed to another replica is refused; a replica killed mid-way loses
nothing acknowledged and the others carry on, also behind nginx
(examples/deploy/nginx-replicas.conf). Races across replicas: one signed event posted to two at
once is appended once; two results of one site for one task, one through each, append one and
refuse the other (``result-exists``). The same under SIGKILLs and a PostgreSQL restart:
test_replica_chaos.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from falcon import testing

from api.client.answers import Appended
from api.client.registry import Client
from api.errors import ApiError, ResultExistsError
from ledger.checkpoint import unverified_size
from ledger.events import Entry
from ledger.kinds import EventId, ResultState
from ledger.store.ledger import Ledger
from ledger.tasks import Result
from tests.api.conftest import FakeClock, make_app, signed_headers, task
from tests.api.registry_process import RegistryProcess, init_registry
from tests.api.replica_cluster import nginx_binary, replica, serving
from tests.ledger.factory import World
from tests.postgres_db import fresh_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def dsn() -> Iterator[str]:
    with fresh_schema() as made:
        yield made


def test_replicas_append_in_one_order_and_wake_each_others_followers(
    tmp_path: Path, dsn: str
) -> None:
    world = World()
    data = init_registry(tmp_path, world, store=dsn)
    replicas = [RegistryProcess(data, store=dsn), replica(tmp_path, data, "b", dsn)]
    for process in replicas:
        process.start()
    try:
        a, b = (Client(r.url, world.keys["alice"]) for r in replicas)
        with a, b, Client(replicas[1].url, world.keys["site-b"]) as follower:
            woke: list[list[int]] = []
            waiter = threading.Thread(
                target=lambda: woke.append([e.index for e in follower.entries(1, wait=20).entries])
            )
            waiter.start()
            first = a.post_event(task(world, 0))  # through A; B's long-poll must wake
            waiter.join(20)
            assert woke == [[first.index]]

            events = [task(world, n) for n in range(1, 21)]
            results: list[int] = []
            posters = [
                threading.Thread(target=lambda c=c, e=e: results.append(c.post_event(e).index))
                for c, e in zip([a, b] * 10, events, strict=True)
            ]
            for t in posters:
                t.start()
            for t in posters:
                t.join()
            assert sorted(results) == list(range(2, 22))
            again = b.post_event(events[0])  # posted through A or B before: the same entry
            assert not again.created and again.index in results
            for c in (a, b):
                page = c.entries(0, limit=100, wait=5)
                while len(page.entries) < 22:  # the other replica's entries, as they come in
                    page = c.entries(0, limit=100, wait=1)
                assert [e.index for e in page.entries] == list(range(22))
            assert a.checkpoint() == b.checkpoint()
    finally:
        for process in replicas:
            process.stop()


def test_a_killed_replica_loses_nothing_acknowledged(tmp_path: Path, dsn: str) -> None:
    world = World()
    data = init_registry(tmp_path, world, store=dsn)
    a, b = RegistryProcess(data, store=dsn), replica(tmp_path, data, "b", dsn)
    a.start()
    b.start()
    try:
        with Client(a.url, world.keys["alice"]) as to_a:
            acknowledged = [to_a.post_event(task(world, n)) for n in range(5)]
        a.kill()
        with Client(b.url, world.keys["alice"]) as to_b:
            after = to_b.post_event(task(world, 99))
            assert after.index == 6
            page = to_b.entries(0, limit=100)
            assert [e.hash for e in page.entries[1:6]] == [x.hash for x in acknowledged]
    finally:
        a.stop()
        b.stop()


def test_a_request_replayed_to_another_replica_is_refused(tmp_path: Path, dsn: str) -> None:
    world = World()
    ledgers = [
        Ledger.create(
            tmp_path / "a",
            genesis=world.sign("admin", world.genesis_body()),
            log_key=world.log_key,
            store_url=dsn,
        ),
    ]
    ledgers.append(Ledger.open(tmp_path / "b", log_key=world.log_key, store_url=dsn))
    clock = FakeClock()
    try:
        apps = [testing.TestClient(make_app(ledger, clock)) for ledger in ledgers]
        headers = signed_headers(
            world.keys["alice"], "GET", "/v1/events", query="from=0", created=int(clock())
        )
        first = apps[0].simulate_get("/v1/events", query_string="from=0", headers=headers)
        assert first.status_code == 200
        replayed = apps[1].simulate_get("/v1/events", query_string="from=0", headers=headers)
        assert replayed.status_code == 401
        assert replayed.json["type"].endswith("/request-replayed")
    finally:
        for ledger in ledgers:
            ledger.close()


def test_nginx_in_front_of_replicas_rides_out_a_killed_one(tmp_path: Path, dsn: str) -> None:
    nginx_binary()
    world = World()
    data = init_registry(tmp_path, world, store=dsn)
    with (
        serving(tmp_path, data, dsn, 2) as (replicas, url),
        Client(url, world.keys["alice"]) as alice,
    ):
        acknowledged = [alice.post_event(task(world, n)) for n in range(6)]
        replicas[0].kill()
        acknowledged += [alice.post_event(task(world, n)) for n in range(6, 12)]
        assert [a.index for a in acknowledged] == list(range(1, 13))
        page = alice.entries(0, limit=100)
        assert [e.hash for e in page.entries[1:]] == [a.hash for a in acknowledged]
        assert alice.checkpoint().split(b"\n")[1] == b"13"  # the signed size


RACES = 25


def _at_once(calls: list[Callable[[], Appended]]) -> list[Appended | ApiError]:
    """Run ``calls`` in threads released together by a barrier; each one's answer or error."""
    barrier = threading.Barrier(len(calls))
    out: list[Appended | ApiError | None] = [None] * len(calls)

    def run(n: int) -> None:
        barrier.wait()
        try:
            out[n] = calls[n]()
        except ApiError as exc:
            out[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(o is not None for o in out), "a racing post did not return"
    return [o for o in out if o is not None]


def _ledger(client: Client) -> list[Entry]:
    size = client.health()
    entries: list[Entry] = []
    while len(entries) < size:
        entries += client.entries(len(entries), limit=1000).entries
    return entries


def test_the_same_event_posted_to_two_replicas_at_once_is_appended_once(
    tmp_path: Path, dsn: str
) -> None:
    world = World()
    data = init_registry(tmp_path, world, store=dsn)
    with serving(tmp_path, data, dsn, 2, nginx=False) as (replicas, _):
        a, b = (Client(r.url, world.keys["alice"]) for r in replicas)
        with a, b:
            for n in range(RACES):
                event = task(world, n)
                answers = _at_once(
                    [lambda e=event: a.post_event(e), lambda e=event: b.post_event(e)]
                )
                first, second = answers
                assert isinstance(first, Appended) and isinstance(second, Appended), answers
                assert (first.index, first.hash) == (second.index, second.hash)
                assert sorted([first.created, second.created]) == [False, True]
            entries = _ledger(a)
    ids = [e.event.event.id for e in entries]
    assert len(entries) == RACES + 1 and len(set(ids)) == len(ids)


def test_two_results_for_one_task_and_site_through_two_replicas_one_is_appended(
    tmp_path: Path, dsn: str
) -> None:
    world = World()
    data = init_registry(tmp_path, world, store=dsn)
    with serving(tmp_path, data, dsn, 2, nginx=False) as (replicas, _):
        alice = Client(replicas[0].url, world.keys["alice"])
        a, b = (Client(r.url, world.keys["site-a"]) for r in replicas)
        with alice, a, b:
            tasks = []
            for n in range(RACES):
                posted = alice.post_event(task(world, n))  # through A; B learns of it in time
                tasks.append(posted.event_id)
                done = Result(task=EventId(posted.event_id), state=ResultState.COMPLETED)
                refused = Result(
                    task=EventId(posted.event_id), state=ResultState.REJECTED, reason="not allowed"
                )
                signed = [world.sign("site-a", done), world.sign("site-a", refused)]
                answers = _at_once(
                    [lambda s=signed[0]: a.post_event(s), lambda s=signed[1]: b.post_event(s)]
                )
                appended = [x for x in answers if isinstance(x, Appended)]
                errors = [x for x in answers if not isinstance(x, Appended)]
                assert len(appended) == 1 and appended[0].created, answers
                assert len(errors) == 1 and isinstance(errors[0], ResultExistsError), answers
                assert (errors[0].status, errors[0].slug) == (409, "result-exists")
            entries = _ledger(alice)
    results = [e.event.event.body for e in entries if isinstance(e.event.event.body, Result)]
    assert sorted(r.task for r in results) == sorted(tasks)  # one result per task, no more


def test_a_reader_moving_between_replicas_never_sees_the_log_go_back(
    tmp_path: Path, dsn: str
) -> None:
    """Behind a round-robin balancer each request of one reader may land on another replica:
    the checkpoint must never shrink (a site would take that for a rollback and stop), and the
    entries a checkpoint covers must be readable from whichever replica comes next."""
    world = World()
    data = init_registry(tmp_path, world, store=dsn)
    with serving(tmp_path, data, dsn, 3, nginx=False) as (replicas, _):
        stop = threading.Event()

        def post(url: str) -> None:
            with Client(url, world.keys["alice"]) as poster:
                n = 0
                while not stop.is_set():
                    poster.post_event(task(world, n))
                    n += 1

        posters = [threading.Thread(target=post, args=(r.url,)) for r in replicas]
        for t in posters:
            t.start()
        readers = [Client(r.url, world.keys["site-b"]) for r in replicas]
        sizes: list[int] = []
        try:
            for turn in range(300):
                reader = readers[turn % len(readers)]
                size = unverified_size(reader.checkpoint())
                assert not sizes or size >= sizes[-1], f"went back from {sizes[-1]} to {size}"
                sizes.append(size)
                after = readers[(turn + 1) % len(readers)]  # the next replica has them all
                assert len(after.entries(size - 1, limit=1).entries) == 1
        finally:
            stop.set()
            for t in posters:
                t.join()
            for reader in readers:
                reader.close()
    assert sizes[-1] > sizes[0]  # the log grew while it was read
