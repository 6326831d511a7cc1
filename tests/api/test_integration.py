"""``pht serve`` as a real process on a loopback port, driven through api.client.registry."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from api.client.registry import Client
from api.client.transport import RetryPolicy
from api.errors import (
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    RuleViolationError,
    TransportError,
    UnauthenticatedError,
)
from crypto import SigningKey
from ledger.bodies import Task
from ledger.checkpoint import parse_verifier_key, verify_checkpoint
from ledger.events import Entry, SignedEvent
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.store.ledger import Ledger
from tests.api.conftest import task
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World, key
from tests.postgres_db import fresh_schema


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module", params=["embedded", "postgres"])
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, world: World
) -> Iterator[RegistryProcess]:
    """One registry process per store: the data directory's, and a PostgreSQL database."""
    with ExitStack() as stack:
        store = stack.enter_context(fresh_schema()) if request.param == "postgres" else None
        data = init_registry(tmp_path_factory.mktemp("registry"), world, store=store)
        process = RegistryProcess(data, store=store)
        process.start()
        yield process
        process.stop()


@pytest.fixture(params=["embedded", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """``--store`` for a registry of the test's own: none (the data directory), or a database."""
    if request.param == "embedded":
        yield None
        return
    with fresh_schema() as dsn:
        yield dsn


def client(registry: RegistryProcess, signer: SigningKey | None, **options: object) -> Client:
    return Client(registry.url, signer, **options)  # type: ignore[arg-type]


def test_client_round_trip(registry: RegistryProcess, world: World) -> None:
    with client(registry, world.keys["alice"]) as alice:
        signed = task(world, 1)
        appended = alice.post_event(signed)
        assert appended.created and appended.event_id == signed.event.id
        again = alice.post_event(signed)
        assert not again.created and again.index == appended.index

        page = alice.entries(0, limit=1000)
        assert page.next == page.size == len(page.entries)
        assert page.entries[appended.index].event == signed
        assert alice.entry(appended.index).hash == appended.hash

        note = alice.checkpoint()
        genesis = page.entries[0].event.event.body
        verifier = parse_verifier_key(genesis.log_key)  # type: ignore[union-attr]
        cp = verify_checkpoint(note, verifier, origin=world.origin)
        assert cp.size >= appended.index + 1
        proof = alice.inclusion_proof(appended.index, cp.size)
        verify_inclusion(
            page.entries[appended.index].leaf_hash, appended.index, cp.size, proof, cp.root
        )
        # The tree of size 1 is the genesis leaf alone: its root is that leaf's hash.
        old = alice.consistency_proof(1, cp.size)
        verify_consistency(1, cp.size, page.entries[0].leaf_hash, cp.root, old)

        view = alice.task(signed.event.id)
        assert view.task.index == appended.index
        assert view.sites["site-a"].state == "pending"


def test_blobs_stream_both_ways(registry: RegistryProcess, world: World, tmp_path: Path) -> None:
    with client(registry, world.keys["site-a"]) as site:
        sha = site.put_blob(b"small")
        assert site.get_blob(sha) == b"small"
        big = tmp_path / "output.bin"
        big.write_bytes(bytes(range(256)) * 20_000)
        sha_big = site.put_blob(big)
        copy = tmp_path / "copy.bin"
        assert site.download_blob(sha_big, copy) == big.stat().st_size
        assert copy.read_bytes() == big.read_bytes()
        with pytest.raises(ProtocolError):
            site.get_blob(sha_big, max_size=1000)


def test_problems_become_exceptions(registry: RegistryProcess, world: World) -> None:
    with client(registry, world.keys["site-a"]) as site:
        refused = world.sign("site-a", Task(image="x:1", sites=("site-a",), config={}))
        with pytest.raises(RuleViolationError) as rule:
            site.post_event(refused)
        assert rule.value.status == 403 and "researcher" in rule.value.detail
        with pytest.raises(NotFoundError):
            site.entry(10_000)
        forged = SignedEvent(event=task(world, 77).event, sig=bytes(64))
        with pytest.raises(InvalidRequestError) as bad:
            site.post_event(forged)
        assert bad.value.slug == "bad-signature"
    with client(registry, key("mallory")) as stranger, pytest.raises(UnauthenticatedError) as who:
        stranger.entries(0)
    assert who.value.slug == "unknown-key"


def _raw_exchange(registry: RegistryProcess, request: bytes) -> tuple[int, str, bytes]:
    """Send raw bytes; return the status, the Content-Type and the body of the answer."""
    host, port = registry.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


@pytest.mark.parametrize(
    ("request_bytes", "status", "slug"),
    [
        (b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "bad-request"),
        (b"GET /v1/events HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "bad-request"),
        (
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n",
            413,
            "body-too-large",
        ),
        (
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "not-implemented",
        ),
    ],
    ids=["negative-length", "header-without-colon", "body-over-the-server-limit", "gzip-te"],
)
def test_requests_waitress_cannot_parse_get_problem_documents(
    registry: RegistryProcess, request_bytes: bytes, status: int, slug: str
) -> None:
    got, content_type, body = _raw_exchange(registry, request_bytes)
    assert (got, content_type) == (status, "application/problem+json")
    problem = json.loads(body)
    assert problem["type"].endswith(f"/{slug}") and problem["status"] == status
    assert problem["detail"]  # says what was wrong
    deadline = time.monotonic() + 5  # and the request has its access log line, like any other
    while f" {status} - -" not in registry.log.read_text():
        assert time.monotonic() < deadline, "no access log line for the refused request"
        time.sleep(0.05)


def test_unsigned_client_reads_only_public_resources(
    registry: RegistryProcess, world: World
) -> None:
    with client(registry, None) as anyone:
        assert anyone.health() >= 1
        assert anyone.checkpoint().startswith(world.origin.encode())
        assert anyone.openapi()["openapi"] == "3.1.0"
        with pytest.raises(UnauthenticatedError) as refused:
            anyone.entries(0)
        assert refused.value.slug == "unauthenticated"


def test_long_poll_wakes_a_waiting_follower(registry: RegistryProcess, world: World) -> None:
    with (
        client(registry, world.keys["site-b"]) as follower,
        client(registry, world.keys["alice"]) as alice,
    ):
        start = follower.entries(0, limit=1000).size
        received: list[float] = []

        def follow() -> None:
            page = follower.entries(start, wait=20)
            received.append(time.monotonic())
            assert [e.index for e in page.entries] == [start]

        waiter = threading.Thread(target=follow)
        waiter.start()
        time.sleep(0.5)
        alice.post_event(task(world, 2))
        posted = time.monotonic()
        waiter.join(10)
        assert received and received[0] - posted < 1.0


def test_transport_failure_is_reported_after_retries() -> None:
    sleeps: list[float] = []
    with (
        Client(
            "http://127.0.0.1:9",
            key("alice"),
            retry=RetryPolicy(attempts=3, backoff=0.01),
            sleep=sleeps.append,
        ) as nowhere,
        pytest.raises(TransportError),
    ):
        nowhere.entries(0)
    assert len(sleeps) == 2


def test_a_request_sent_twice_on_the_way_is_signed_afresh_and_retried(
    registry: RegistryProcess, world: World
) -> None:
    """What a load balancer does when a replica dies having verified a request: the same signed
    request reaches a registry twice. The second copy is refused ``request-replayed``; the
    client, which signs every attempt with a fresh nonce, signs again and is answered."""
    with client(registry, world.keys["alice"]) as warm:
        warm.entries(0)  # past the registry's first second, whose signatures it refuses
    nonces = iter(["a" * 32, "a" * 32, "b" * 32])  # the second request reuses the first's
    sleeps: list[float] = []
    with client(
        registry, world.keys["alice"], nonce=lambda: next(nonces), sleep=sleeps.append
    ) as alice:
        event = task(world, 50)
        appended = alice.post_event(event)
        again = alice.post_event(event)  # refused as replayed once, then signed anew
    assert (again.index, again.created) == (appended.index, False)
    assert len(sleeps) == 1
    with (
        client(
            registry, world.keys["alice"], nonce=lambda: "d" * 32, retry=RetryPolicy(attempts=2)
        ) as stuck,
        pytest.raises(UnauthenticatedError) as refused,
    ):
        stuck.entries(0)
        stuck.entries(0)  # a client that really does reuse its nonce is refused for good
    assert refused.value.slug == "request-replayed"


def test_sigterm_stops_cleanly_and_keeps_every_acknowledged_append(
    tmp_path: Path, world: World, store: str | None
) -> None:
    data = init_registry(tmp_path, world, store=store)
    process = RegistryProcess(data, store=store)
    process.start()
    try:
        with client(process, world.keys["alice"]) as alice:
            acknowledged = [alice.post_event(task(world, n)) for n in range(20)]
        # The access log is buffered, but an operator tailing it sees a request within moments.
        deadline = time.monotonic() + 5
        while (tmp_path / "serve.log").read_text().count("POST /v1/events 201") < 20:
            assert time.monotonic() < deadline, "access log lines did not appear while serving"
            time.sleep(0.05)
        assert process.terminate() == 0
    finally:
        process.stop()
    reopened = Ledger.open(data, log_key=SigningKey.load(data / "log.key"), store_url=store)
    try:
        assert reopened.size == 21
        for appended in acknowledged:
            assert reopened.entry(appended.index).hash == appended.hash
    finally:
        reopened.close()
    log = (tmp_path / "serve.log").read_text()
    assert "POST /v1/events 201" in log  # one line per request
    assert "stopped; ledger closed at size 21" in log


def test_client_retries_across_a_restart(tmp_path: Path, world: World, store: str | None) -> None:
    data = init_registry(tmp_path, world, store=store)
    process = RegistryProcess(data, store=store)
    process.start()
    try:
        with client(process, world.keys["alice"], retry=RetryPolicy(attempts=12)) as alice:
            alice.post_event(task(world, 0))
            process.kill()
            restart = threading.Timer(0.5, process.start)
            restart.start()
            appended = alice.post_event(task(world, 1))  # refused connections, then retried
            restart.join()
            assert appended.created and appended.index == 2
    finally:
        process.stop()


def test_auditor_reads_the_exact_stored_bytes_of_entries(
    registry: RegistryProcess, world: World
) -> None:
    with client(registry, world.keys["alice"]) as alice:
        # A config holding commas, newlines escaped in strings and nested entry-like objects.
        tricky = {"x": 'a,"b"\n,{"event":1}', "nested": [{"event": {"event": [1, 2]}}, "]"]}
        alice.post_event(world.sign("alice", Task(image="a/b:1", sites=("site-a",), config=tricky)))
        records, size = alice.entry_records(0, 1000)
        parsed = alice.entries(0, limit=1000).entries
    assert size == len(records) == len(parsed)
    assert records == [entry.canonical for entry in parsed]
    assert [Entry.from_canonical(r).index for r in records] == list(range(size))
