"""Fixtures for the API tests: a real ledger in a temp directory, the app over it, a fake clock,
and a caller that signs requests the way api.client.registry does (so attacks can tamper in
between)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import falcon
import pytest
from falcon import testing

from api.registry.app import create_app
from api.wire.httpsig import RequestSigner
from crypto import SigningKey
from ledger.bodies import Task
from ledger.events import SignedEvent
from ledger.store.ledger import Ledger
from tests.ledger.factory import World
from tests.postgres_db import fresh_schema

HOST = "falconframework.org"  # falcon.testing's default Host
T0 = 1_800_000_000.25


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Message:
    """A request as the signer sees it (method, absolute URL, headers)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def signed_headers(
    key: SigningKey,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes | None = None,
    created: int,
    nonce: str | None = None,
    content_type: str | None = None,
    host: str = HOST,
) -> dict[str, str]:
    message = Message(method, f"http://{host}{path}" + (f"?{query}" if query else ""))
    if content_type:
        message.headers["Content-Type"] = content_type
    RequestSigner(key).sign(
        message, body=body, created=created, nonce=nonce or secrets.token_hex(16)
    )
    return message.headers


class Caller:
    """Signs and sends requests through falcon.testing."""

    def __init__(self, client: testing.TestClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock

    def __call__(
        self,
        method: str,
        path: str,
        *,
        key: SigningKey | None = None,
        query: str = "",
        body: bytes | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> testing.Result:
        sent = dict(headers or {})
        if key is not None:
            sent.update(
                signed_headers(
                    key,
                    method,
                    path,
                    query=query,
                    body=body,
                    created=int(self.clock()),
                    content_type=content_type,
                )
            )
        elif content_type:
            sent["Content-Type"] = content_type
        return self.client.simulate_request(
            method, path, query_string=query or None, body=body, headers=sent
        )


@pytest.fixture
def world() -> World:
    return World()


STORES = ("embedded", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets ``BOTH_STORES = True`` runs each test over a ledger on both stores."""
    if getattr(metafunc.module, "BOTH_STORES", False) and "store_url" in metafunc.fixturenames:
        metafunc.parametrize("store_url", STORES, indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (the data directory's embedded store), or with ``BOTH_STORES`` also a DSN of a
    PostgreSQL schema of the test's own."""
    if getattr(request, "param", "embedded") == "embedded":
        yield None
        return
    with fresh_schema() as dsn:
        yield dsn


@pytest.fixture
def ledger(tmp_path: Path, world: World, store_url: str | None) -> Iterator[Ledger]:
    opened = Ledger.create(
        tmp_path / "data",
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        store_url=store_url,
    )
    yield opened
    opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_app(ledger: Ledger, clock: FakeClock, **options: Any) -> falcon.App[Any, Any]:
    app = create_app(ledger, clock=clock, **options)
    clock.advance(1)  # requests signed in the app's first second are refused (see api.wire.httpsig)
    return app


@pytest.fixture
def app(ledger: Ledger, clock: FakeClock) -> falcon.App[Any, Any]:
    return make_app(ledger, clock, max_body=64 * 1024, max_blob=1024 * 1024, long_poll_slots=2)


@pytest.fixture
def call(app: falcon.App[Any, Any], clock: FakeClock) -> Caller:
    return Caller(testing.TestClient(app), clock)


def task(world: World, n: int = 0, *, author: str = "alice") -> SignedEvent:
    return world.sign(author, Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": n}))


def problem_slug(result: testing.Result) -> str:
    assert result.headers["content-type"] == "application/problem+json", result.text
    body = result.json
    assert body["status"] == result.status_code
    assert body["type"].startswith("https://pht.example/problems/")
    return str(body["type"]).removeprefix("https://pht.example/problems/")
