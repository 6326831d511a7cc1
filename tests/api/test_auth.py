"""Attacks on request authentication (RFC 9421 signatures), each named for the attack.

Every refused request must be a 401 problem with a stable type and a challenge; only the genuine,
fresh, first use of a current member's signature gets through.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import falcon
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from falcon import testing
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)

from api.errors import RequestAuthError
from api.registry.app import create_app
from api.wire.httpsig import REQUEST_REPLAYED, ReplayCache, RequestSigner
from crypto import SigningKey
from ledger.bodies import Member, MemberAction, Role
from ledger.errors import StoreError
from ledger.store.ledger import Ledger
from tests.api.conftest import HOST, Caller, FakeClock, Message, problem_slug, signed_headers, task
from tests.ledger.factory import World, key

JSON = "application/json"


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: str
    body: bytes | None
    headers: dict[str, str]


def _send(client: testing.TestClient, sent: Sent) -> testing.Result:
    return client.simulate_request(
        sent.method,
        sent.path,
        query_string=sent.query or None,
        body=sent.body,
        headers=sent.headers,
    )


def _genuine_post(world: World, clock: FakeClock, signer: str = "alice") -> Sent:
    body = task(world).canonical()
    headers = signed_headers(
        world.keys[signer] if signer in world.keys else key(signer),
        "POST",
        "/v1/events",
        body=body,
        created=int(clock()),
        content_type=JSON,
    )
    return Sent("POST", "/v1/events", "", body, headers)


def _genuine_get(world: World, clock: FakeClock, path: str = "/v1/events/0") -> Sent:
    headers = signed_headers(world.keys["alice"], "GET", path, created=int(clock()))
    return Sent("GET", path, "", None, headers)


# Each attack turns a genuine request into the attacker's version.
Attack = Callable[[World, FakeClock], Sent]


def no_signature(world: World, clock: FakeClock) -> Sent:
    return Sent("GET", "/v1/events/0", "", None, {})


def signature_by_non_member(world: World, clock: FakeClock) -> Sent:
    return _genuine_post(world, clock, signer="mallory")


def stale_created(world: World, clock: FakeClock) -> Sent:
    headers = signed_headers(world.keys["alice"], "GET", "/v1/events/0", created=int(clock()) - 61)
    return Sent("GET", "/v1/events/0", "", None, headers)


def created_in_the_future(world: World, clock: FakeClock) -> Sent:
    headers = signed_headers(world.keys["alice"], "GET", "/v1/events/0", created=int(clock()) + 30)
    return Sent("GET", "/v1/events/0", "", None, headers)


def body_changed_after_signing(world: World, clock: FakeClock) -> Sent:
    sent = _genuine_post(world, clock)
    other = task(world, 99).canonical()
    return Sent(sent.method, sent.path, "", other, sent.headers)


def body_and_digest_changed_after_signing(world: World, clock: FakeClock) -> Sent:
    sent = _genuine_post(world, clock)
    other = task(world, 99).canonical()
    digest = signed_headers(
        world.keys["alice"], "POST", "/v1/events", body=other, created=int(clock())
    )["Content-Digest"]
    return Sent(sent.method, sent.path, "", other, {**sent.headers, "Content-Digest": digest})


def path_changed_after_signing(world: World, clock: FakeClock) -> Sent:
    sent = _genuine_get(world, clock, "/v1/events/0")
    return Sent("GET", "/v1/events/1", "", None, sent.headers)


def query_changed_after_signing(world: World, clock: FakeClock) -> Sent:
    headers = signed_headers(
        world.keys["alice"], "GET", "/v1/events", query="from=0", created=int(clock())
    )
    return Sent("GET", "/v1/events", "from=1", None, headers)


def method_changed_after_signing(world: World, clock: FakeClock) -> Sent:
    sent = _genuine_post(world, clock)
    return Sent("PUT", "/v1/blobs/" + "0" * 64, "", sent.body, sent.headers)


def host_changed_after_signing(world: World, clock: FakeClock) -> Sent:
    headers = signed_headers(
        world.keys["alice"], "GET", "/v1/events/0", created=int(clock()), host="other.example"
    )
    return Sent("GET", "/v1/events/0", "", None, headers)


def signature_bytes_flipped(world: World, clock: FakeClock) -> Sent:
    sent = _genuine_get(world, clock)
    value = sent.headers["Signature"]
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    return Sent(sent.method, sent.path, "", None, {**sent.headers, "Signature": flipped})


def keyid_swapped_to_another_member(world: World, clock: FakeClock) -> Sent:
    sent = _genuine_get(world, clock)
    alice, bob = world.keys["alice"].key_id, world.keys["site-a"].key_id
    swapped = sent.headers["Signature-Input"].replace(alice, bob)
    return Sent(sent.method, sent.path, "", None, {**sent.headers, "Signature-Input": swapped})


def _stock_signed(
    clock: FakeClock, method: str, path: str, body: bytes | None = None, **options: Any
) -> Sent:
    """Signed by the package's stock ed25519 signer with alice's key, outside the profile."""
    message = Message(method, f"http://{HOST}{path}", {"Content-Type": JSON} if body else {})
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Private()).sign(
        message,
        key_id=key("alice").key_id,
        created=datetime.fromtimestamp(int(clock()), UTC),
        covered_component_ids=("@method", "@target-uri"),
        **options,
    )
    return Sent(method, path, "", body, message.headers)


def signature_without_the_pht_tag(world: World, clock: FakeClock) -> Sent:
    return _stock_signed(clock, "GET", "/v1/events/0", nonce=secrets.token_hex(16))


def post_without_signed_digest(world: World, clock: FakeClock) -> Sent:
    body = task(world).canonical()
    return _stock_signed(
        clock, "POST", "/v1/events", body, nonce=secrets.token_hex(16), tag="pht/v1/request"
    )


def missing_nonce(world: World, clock: FakeClock) -> Sent:
    return _stock_signed(clock, "GET", "/v1/events/0", tag="pht/v1/request")


ATTACKS: list[tuple[Attack, str]] = [
    (no_signature, "unauthenticated"),
    (signature_by_non_member, "unknown-key"),
    (stale_created, "signature-expired"),
    (created_in_the_future, "signature-expired"),
    (body_changed_after_signing, "unauthenticated"),
    (body_and_digest_changed_after_signing, "unauthenticated"),
    (path_changed_after_signing, "unauthenticated"),
    (query_changed_after_signing, "unauthenticated"),
    (method_changed_after_signing, "unauthenticated"),
    (host_changed_after_signing, "unauthenticated"),
    (signature_bytes_flipped, "unauthenticated"),
    (keyid_swapped_to_another_member, "unauthenticated"),
    (signature_without_the_pht_tag, "unauthenticated"),
    (post_without_signed_digest, "unauthenticated"),
    (missing_nonce, "unauthenticated"),
]


@pytest.mark.parametrize(("attack", "slug"), ATTACKS, ids=[a.__name__ for a, _ in ATTACKS])
def test_rejects_attack(
    app: falcon.App[Any, Any], clock: FakeClock, world: World, attack: Attack, slug: str
) -> None:
    result = _send(testing.TestClient(app), attack(world, clock))
    assert result.status_code == 401, result.text
    assert problem_slug(result) == slug
    assert result.headers["www-authenticate"].startswith("Signature")
    assert 'tag="pht/v1/request"' in result.headers["accept-signature"]


def test_genuine_requests_pass(app: falcon.App[Any, Any], clock: FakeClock, world: World) -> None:
    client = testing.TestClient(app)
    assert _send(client, _genuine_get(world, clock)).status_code == 200
    assert _send(client, _genuine_post(world, clock)).status_code == 201


def test_rejects_replayed_request(
    app: falcon.App[Any, Any], clock: FakeClock, world: World
) -> None:
    client = testing.TestClient(app)
    sent = _genuine_post(world, clock)
    assert _send(client, sent).status_code == 201
    clock.advance(30)  # still inside the freshness window
    replay = _send(client, sent)
    assert replay.status_code == 401 and problem_slug(replay) == "request-replayed"


def test_rejects_replayed_get_even_with_headers_reordered(
    app: falcon.App[Any, Any], clock: FakeClock, world: World
) -> None:
    client = testing.TestClient(app)
    sent = _genuine_get(world, clock)
    assert _send(client, sent).status_code == 200
    reordered = dict(reversed(list(sent.headers.items())))
    replay = _send(client, Sent(sent.method, sent.path, "", None, reordered))
    assert replay.status_code == 401 and problem_slug(replay) == "request-replayed"


def test_rejects_revoked_member(
    call: Caller, clock: FakeClock, world: World, ledger: Ledger
) -> None:
    site_c = world.keys["site-c"]
    assert call("GET", "/v1/events/0", key=site_c).status_code == 200
    ledger.append(
        world.sign(
            "admin",
            Member(
                action=MemberAction.REVOKE,
                name="site-c",
                role=Role.SITE,
                public_key=site_c.public.b64(),
            ),
        )
    )
    result = call("GET", "/v1/events/0", key=site_c)
    assert result.status_code == 401 and problem_slug(result) == "unknown-key"
    assert "current member" in result.json["detail"]


def test_rejects_signature_from_before_a_restart(
    ledger: Ledger, clock: FakeClock, world: World
) -> None:
    """A request signed before the app started cannot be replayed into its empty replay memory."""
    early = _genuine_get(world, clock)
    clock.advance(0.5)
    restarted = create_app(ledger, clock=clock)
    result = _send(testing.TestClient(restarted), early)
    assert result.status_code == 401 and problem_slug(result) == "signature-expired"


def test_replay_memory_forgets_only_expired_nonces() -> None:
    cache = ReplayCache()
    cache.remember("k", "n1", until=100.0, now=0.0)
    with pytest.raises(RequestAuthError) as refused:
        cache.remember("k", "n1", until=100.0, now=99.0)
    assert refused.value.slug == REQUEST_REPLAYED
    cache.remember("k", "n2", until=200.0, now=101.0)
    assert len(cache) == 1  # n1 left once its created time fell out of the window
    cache.remember("other-key", "n2", until=200.0, now=101.0)  # nonces are per key


def test_replay_memory_is_bounded() -> None:
    cache = ReplayCache(capacity=2)
    cache.remember("k", "a", until=10.0, now=0.0)
    cache.remember("k", "b", until=10.0, now=0.0)
    with pytest.raises(RequestAuthError):
        cache.remember("k", "c", until=10.0, now=0.0)
    cache.remember("k", "c", until=20.0, now=11.0)


class _SharedNonces:
    """The replicas' shared nonce memory (a database in production), as a test controls it."""

    def __init__(self, first_use: Callable[[str], bool]) -> None:
        self._first_use = first_use

    def first_use(self, key_id: str, nonce: str, *, until: float, now: float) -> bool:
        return self._first_use(nonce)


def test_requests_wait_for_the_shared_nonce_memory_side_by_side() -> None:
    """A database round trip per request must not queue every other request of the replica."""
    both_inside = threading.Barrier(2, timeout=5)
    cache = ReplayCache(shared=_SharedNonces(lambda nonce: both_inside.wait() >= 0))
    failures: list[BaseException] = []

    def remember(nonce: str) -> None:
        try:
            cache.remember("k", nonce, until=100.0, now=0.0)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=remember, args=(nonce,)) for nonce in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == []


def test_a_second_use_while_the_first_is_at_the_shared_memory_is_refused() -> None:
    inside, leave = threading.Event(), threading.Event()
    cache = ReplayCache(shared=_SharedNonces(lambda nonce: inside.set() or leave.wait(5)))
    first = threading.Thread(target=cache.remember, args=("k", "n"), kwargs={"until": 9, "now": 0})
    first.start()
    try:
        assert inside.wait(5)
        with pytest.raises(RequestAuthError) as refused:
            cache.remember("k", "n", until=9.0, now=0.0)
        assert refused.value.slug == REQUEST_REPLAYED
    finally:
        leave.set()
        first.join(5)


def test_a_nonce_the_shared_memory_could_not_record_stays_unused() -> None:
    """The database did not answer: the request was refused (503), so its nonce is not spent."""
    answers: list[bool | None] = [None, True]

    def first_use(nonce: str) -> bool:
        answer = answers.pop(0)
        if answer is None:
            raise StoreError("the database does not answer")
        return answer

    cache = ReplayCache(shared=_SharedNonces(first_use))
    with pytest.raises(StoreError):
        cache.remember("k", "n", until=100.0, now=0.0)
    cache.remember("k", "n", until=100.0, now=1.0)
    with pytest.raises(RequestAuthError):
        cache.remember("k", "n", until=100.0, now=2.0)


class _Public(HTTPSignatureKeyResolver):
    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def resolve_public_key(self, key_id: str) -> Any:
        return Ed25519PublicKey.from_public_bytes(self.key.public.raw)


class _Private(HTTPSignatureKeyResolver):
    """alice's key (tests.ledger.factory derives keys from their name) as a cryptography key."""

    def resolve_private_key(self, key_id: str) -> Any:
        return Ed25519PrivateKey.from_private_bytes(b"alice".ljust(32, b"\x00"))


def test_signatures_are_plain_rfc9421_ed25519() -> None:
    """A stock RFC 9421 verifier (the package's own ed25519 over a cryptography key) accepts
    what the client signs: no PHT-specific prefix is hidden in the signed bytes."""
    alice = key("alice")
    body = b'{"x":1}'
    message = Message("POST", "http://registry.example:8080/v1/events?x=1", {"Content-Type": JSON})
    RequestSigner(alice).sign(message, body=body, created=int(time.time()), nonce="ab" * 16)
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_Public(alice)
    )
    [result] = verifier.verify(
        message,
        expect_tag="pht/v1/request",
        require_components=("@method", "@target-uri", "content-digest"),
        body=body,
    )
    assert result.parameters["keyid"] == alice.key_id
    assert (
        result.covered_components['"@target-uri"'] == "http://registry.example:8080/v1/events?x=1"
    )
