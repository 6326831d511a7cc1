"""The signature profile: the strict fast path agrees with the package on every request.

PHT's own requests are signed and verified with one format string instead of the package's
general code (``api/wire/httpsig/_fast_strict.py``). Differential tests sign random requests,
tamper with them at random, and check that the fast paths write and decide exactly what the
package does.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms
from hypothesis import given, settings
from hypothesis import strategies as st

from api.errors import RequestAuthError
from api.wire.httpsig import ReplayCache, RequestSigner, RequestVerifier, ServerMessage
from api.wire.httpsig._fast_strict import STRICT_URL, sign_strict, verify_strict
from crypto import KeyId, PublicKey
from tests.ledger.factory import key

NOW = 1_800_000_000
ALICE = key("alice")
BOB = key("bob")


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


def lookup(key_id: KeyId) -> PublicKey | None:
    return {ALICE.key_id: ALICE.public, BOB.key_id: BOB.public}.get(key_id)


def verdict(request: Request, *, strict: bool) -> str:
    verifier = RequestVerifier(
        lookup, clock=lambda: NOW + 0.5, replay=ReplayCache(), strict_path=strict
    )
    message = ServerMessage(request.method, request.url, _wsgi_style(request.headers))
    try:
        verified = verifier.verify(message, request.body)
    except RequestAuthError as exc:
        return f"refused {exc.slug}"
    return f"accepted {verified.key_id[:8]} {verified.nonce} {verified.digest}"


def _wsgi_style(headers: dict[str, str]) -> dict[str, str]:
    """Header names as Falcon's ``req.headers`` gives them (upper case)."""
    return {name.upper(): value for name, value in headers.items()}


def signed(
    method: str, url: str, body: bytes | None, *, created: int = NOW, signer=ALICE
) -> Request:
    request = Request(method, url, body=body)
    RequestSigner(signer).sign(request, body=body, created=created, nonce=secrets.token_hex(16))
    return request


Tamper = Callable[[Request], Request]


def _header(name: str, change: Callable[[str], str]) -> Tamper:
    def tamper(request: Request) -> Request:
        headers = dict(request.headers)
        if name in headers:
            headers[name] = change(headers[name])
        return replace(request, headers=headers)

    return tamper


TAMPERING: dict[str, Tamper] = {
    "none": lambda r: r,
    "method": lambda r: replace(r, method="DELETE" if r.method != "DELETE" else "GET"),
    "path": lambda r: replace(r, url=r.url.replace("/v1/", "/v2/")),
    "query": lambda r: replace(r, url=r.url + ("&x=1" if "?" in r.url else "?x=1")),
    "host": lambda r: replace(r, url=r.url.replace("127.0.0.1", "127.0.0.2")),
    "body": lambda r: replace(r, body=(r.body or b"") + b" "),
    "no-body": lambda r: replace(r, body=None),
    "digest": _header("Content-Digest", lambda v: v.replace("sha-256=:", "sha-256=:A", 1)),
    "created": _header(
        "Signature-Input", lambda v: v.replace(f"created={NOW}", f"created={NOW - 1}")
    ),
    "stale": _header(
        "Signature-Input", lambda v: v.replace(f"created={NOW}", f"created={NOW - 90}")
    ),
    "keyid": _header("Signature-Input", lambda v: v.replace(ALICE.key_id, BOB.key_id)),
    "nonce": _header("Signature-Input", lambda v: v.replace('nonce="', 'nonce="0')),
    "tag": _header("Signature-Input", lambda v: v.replace("pht/v1/request", "pht/v1/event")),
    "no-alg": _header("Signature-Input", lambda v: v.replace(';alg="ed25519"', "")),
    "label": _header("Signature", lambda v: v.replace("pht=", "sig=")),
    "sig-bit": _header("Signature", lambda v: v[:8] + ("B" if v[8] == "A" else "A") + v[9:]),
    "spaces": _header("Signature-Input", lambda v: f"  {v} "),
    "drop-sig": lambda r: replace(
        r, headers={k: v for k, v in r.headers.items() if k != "Signature"}
    ),
    "second-input": _header("Signature-Input", lambda v: v + ", x=()"),
}

paths = st.from_regex(
    r"/v1/([a-z0-9._~!$&'()*+,;=:@-]|%[0-9A-F]{2}){0,20}(/[0-9]{1,3})?", fullmatch=True
)
queries = st.one_of(
    st.just(""), st.from_regex(r"\?[a-z]{1,5}=([0-9a-z/?]|%[0-9a-f]{2}){0,6}", fullmatch=True)
)


@given(
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=paths,
    query=queries,
    body=st.binary(max_size=64),
    tamper=st.sampled_from(sorted(TAMPERING)),
)
@settings(max_examples=300, deadline=None)
def test_strict_path_agrees_with_the_package(
    method: str, path: str, query: str, body: bytes, tamper: str
) -> None:
    sent_body = body if method != "GET" else None
    request = TAMPERING[tamper](signed(method, f"http://127.0.0.1:8080{path}{query}", sent_body))
    assert verdict(request, strict=True) == verdict(request, strict=False)


hosts = st.sampled_from(
    ["http://127.0.0.1:8080", "http://localhost", "https://Registry.Example:443", "http://h"]
)


@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    origin=hosts,
    path=paths,
    query=queries,
    body=st.one_of(st.none(), st.binary(max_size=64)),
    streamed=st.booleans(),
    nonce=st.from_regex(r"[A-Za-z0-9_-]{16,40}", fullmatch=True),
)
@settings(max_examples=300, deadline=None)
def test_direct_signing_writes_exactly_what_the_package_writes(
    method: str,
    origin: str,
    path: str,
    query: str,
    body: bytes | None,
    streamed: bool,
    nonce: str,
) -> None:
    digest = hashlib.sha256(body).hexdigest() if streamed and body is not None else None
    sent = None if digest else body

    def sign(request: Request, *, direct: bool) -> Request:
        signer = RequestSigner(ALICE, strict_path=direct)
        if digest:
            request.headers["Content-Digest"] = "stale"  # replaced by the signer
        signer.sign(request, body=sent, created=NOW, nonce=nonce, digest_sha256=digest)
        return request

    url = f"{origin}{path}{query}"
    direct = sign(Request(method, url), direct=True)
    package = sign(Request(method, url), direct=False)
    assert direct.headers == package.headers
    assert "Signature" in direct.headers


def test_direct_signing_leaves_other_requests_to_the_package() -> None:
    for method, url, nonce in [
        ("get", "http://h/v1/events", "n" * 16),  # lower-case method
        ("GET", "http://h/v1/\u00e9", "n" * 16),  # not the strict URL form
        ("GET", "http://h/v1/events", "short"),  # a nonce outside the plain form
    ]:
        request = Request(method, url)
        assert not sign_strict(
            ALICE, request, body=None, digest_sha256=None, created=NOW, nonce=nonce
        )
        assert request.headers == {}


@pytest.mark.parametrize(
    "url",
    [
        "http://h/v1/%",
        "http://h/v1/%zz",
        "http://h/v1/a b",
        "http://h/v1/\u00e9",
        "http://h",
        "http://u@h/v1",
        "http://h/v1#f",
        "ftp://h/v1",
    ],
)
def test_strict_path_leaves_unusual_urls_to_the_package(url: str) -> None:
    assert STRICT_URL.fullmatch(url) is None


def test_genuine_requests_take_the_strict_path() -> None:
    for method, body in (("GET", None), ("POST", b'{"a":1}'), ("PUT", b"")):
        request = signed(method, "http://127.0.0.1:8080/v1/events?from=3", body)
        message = ServerMessage(method, request.url, _wsgi_style(request.headers))
        verified = verify_strict(message, body, lookup, earliest=NOW - 60, latest=NOW + 5)
        assert verified is not None
        assert verified.key_id == ALICE.key_id


class _Private(HTTPSignatureKeyResolver):
    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(b"alice".ljust(32, b"\x00"))


@pytest.mark.parametrize("strict", [True, False])
def test_other_conforming_signers_are_accepted(strict: bool) -> None:
    """A stock RFC 9421 signer that orders parameters differently and signs more components
    is verified by the package path."""
    body = b'{"x":1}'
    request = Request("POST", "http://127.0.0.1:8080/v1/events", {"Content-Type": "text/x"}, body)
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Private()).sign(
        request,
        key_id=ALICE.key_id,
        created=datetime.fromtimestamp(NOW, UTC),
        nonce="n" * 20,
        tag="pht/v1/request",
        label="other",
        covered_component_ids=("content-type", "@target-uri", "@method"),
        body=body,
    )
    assert verdict(request, strict=strict).startswith("accepted")
    digest = hashlib.sha256(body).digest()
    assert verdict(request, strict=strict).endswith(
        "sha-256=:" + __import__("base64").b64encode(digest).decode() + ":"
    )
