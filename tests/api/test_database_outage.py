"""A registry on PostgreSQL when the database goes away and comes back: appends are refused with
503 ``store-unavailable`` and ``Retry-After`` (never acknowledged, never half-applied), and once
the database answers again the same registry process appends and serves as before."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from falcon import testing

from ledger.store.ledger import Ledger
from tests.api.conftest import Caller, FakeClock, make_app, problem_slug, task
from tests.ledger.factory import World
from tests.postgres_db import fresh_schema
from tests.postgres_proxy import Proxy

pytestmark = pytest.mark.postgres
JSON = "application/json"


@pytest.fixture
def proxy() -> Iterator[tuple[Proxy, str]]:
    with fresh_schema() as dsn:
        proxy = Proxy(dsn)
        try:
            yield proxy, dsn
        finally:
            proxy.cut()


@pytest.fixture
def outage_ledger(tmp_path: Path, world: World, proxy: tuple[Proxy, str]) -> Iterator[Ledger]:
    opened = Ledger.create(
        tmp_path / "data",
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        store_url=proxy[0].dsn,
    )
    yield opened
    opened.close()


@pytest.fixture
def call(outage_ledger: Ledger, clock: FakeClock) -> Caller:
    return Caller(testing.TestClient(make_app(outage_ledger, clock)), clock)


def test_appends_wait_out_a_database_outage(
    call: Caller, world: World, proxy: tuple[Proxy, str], outage_ledger: Ledger
) -> None:
    alice = world.keys["alice"]

    def post(n: int) -> testing.Result:
        body = task(world, n).canonical()
        return call("POST", "/v1/events", key=alice, body=body, content_type=JSON)

    assert post(1).status_code == 201
    assert call("GET", "/readyz").json == {"status": "ready", "size": 2, "integrator": True}
    proxy[0].cut()
    unready = call("GET", "/readyz")  # a load balancer's readiness check: take it out
    assert unready.status_code == 503 and problem_slug(unready) == "store-unavailable"
    assert call("GET", "/healthz").status_code == 200  # the process itself is alive
    refused = post(2)
    assert refused.status_code == 503, refused.text
    assert problem_slug(refused) == "store-unavailable"
    assert refused.headers["retry-after"] == "1"
    assert post(3).status_code == 503  # still gone: the state was not left ahead of the store
    # Which checkpoint is newest is the database's to say: a replica that cannot ask it does
    # not risk serving an older one than another replica served (a reader would see a rollback).
    gone = call("GET", "/v1/checkpoint")
    assert gone.status_code == 503 and problem_slug(gone) == "store-unavailable"

    proxy[0].restore()
    assert call("GET", "/readyz").status_code == 200
    again = post(4)
    assert again.status_code == 201, again.text
    assert again.json["index"] == 2
    page = call("GET", "/v1/events", key=alice, query="from=0")
    assert [e["index"] for e in page.json["entries"]] == [0, 1, 2]
    with psycopg.connect(proxy[1]) as conn:
        rows = conn.execute("SELECT idx FROM pht_entries ORDER BY idx").fetchall()
    assert rows == [(0,), (1,), (2,)]
    assert outage_ledger.size == 3


def test_a_write_cut_midway_is_settled_without_waiting_for_the_next_append(
    call: Caller,
    world: World,
    proxy: tuple[Proxy, str],
    outage_ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database goes away after the ledger judged a batch and before it committed: the
    state may be ahead of the store, so reads are refused until it is rebuilt. Once the
    database is back, the store's watcher rebuilds it: readers are answered again without
    anyone having to post first, and the cut entry never appears."""
    alice = world.keys["alice"]
    store = outage_ledger._store
    sequence = store.append_sequenced

    def cut_after_deciding(decide: Any) -> None:
        def decided_then_cut(newer: Any) -> list[bytes]:
            payloads = decide(newer)
            proxy[0].cut()
            return payloads

        sequence(decided_then_cut)

    monkeypatch.setattr(store, "append_sequenced", cut_after_deciding)
    body = task(world, 1).canonical()
    refused = call("POST", "/v1/events", key=alice, body=body, content_type=JSON)
    assert refused.status_code == 503 and problem_slug(refused) == "store-unavailable"
    monkeypatch.undo()
    proxy[0].restore()

    deadline = time.monotonic() + 15
    while (answer := call("GET", "/v1/checkpoint")).status_code == 503:
        assert time.monotonic() < deadline, f"still refused: {answer.text}"
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    assert answer.text.split("\n")[1] == "1"  # the genesis entry; the cut one never landed
    page = call("GET", "/v1/events", key=alice, query="from=0")
    assert [e["index"] for e in page.json["entries"]] == [0]
    again = call("POST", "/v1/events", key=alice, body=body, content_type=JSON)
    assert again.status_code == 201 and again.json["index"] == 1, again.text
