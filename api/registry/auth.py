"""Request authentication: Falcon middleware in front of every resource but the public ones.

For each request to a protected resource, in this order (a method the resource does not have is
left alone: Falcon answers 405 ``method-not-allowed`` with ``Allow``, whatever the body, before
anything is read, since a body limit or a signature says nothing about a method that cannot be
served; the methods each path has are public in ``/openapi.json`` anyway):

1. **Size**: a declared ``Content-Length`` above the resource's ``body_limit`` is refused with 413
   before anything is read (so an unauthenticated client cannot make the registry hash a huge
   body); the body is then read, bounded, into ``req.context.body``. A streamed resource (blobs)
   reads its own body later and must check it against ``req.context.body_sha256``.
2. **Signature** (:mod:`api.wire.httpsig`): profile, freshness, the key of a *current* member, the
   digest of the body, and no replay. Any failure is 401 with a problem type saying which
   (``unauthenticated``, ``unknown-key``, ``signature-expired``, ``request-replayed``).
3. **Role**: POST/PUT on a resource with ``writers`` requires one of those roles: 403
   ``forbidden``. (Which *events* a member may append is decided by the ledger's rules: 403
   ``rule-violation``.)

Decisions: a revoked member's key, like a stranger's, is not the key of a current member, so its
requests cannot be authenticated at all (401 ``unknown-key``, the detail says so); 403 is reserved
for a current member acting beyond their role. The public resources are ``/healthz``,
``/readyz``, ``/openapi.json``, ``/v1/checkpoint`` (the checkpoint is signed by the log key and
meant to be gossiped) and the web view's static files (``/``, ``/assets/...``).
``req.context.member`` holds the authenticated :class:`MemberRecord`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import http_sf

from api.registry.resources import STREAMED
from api.registry.webview import ASSET_ROUTES
from api.wire.httpsig import BODY_METHODS, RequestVerifier, ServerMessage, target_uri
from api.wire.problems import Problem
from crypto import KeyId, PublicKey
from ledger.store.ledger import Ledger

PUBLIC_ROUTES = (
    frozenset({"/healthz", "/readyz", "/openapi.json", "/v1/checkpoint", "/v1/checkpoint/cosigned"})
    | ASSET_ROUTES
)


class Authenticator:
    """Falcon middleware; ``public_url`` (scheme://authority) pins the signed target URI's origin
    instead of trusting the request's Host header (set it behind a proxy)."""

    def __init__(
        self,
        ledger: Ledger,
        verifier: RequestVerifier,
        *,
        public_url: str | None = None,
        public_routes: frozenset[str] = PUBLIC_ROUTES,
    ) -> None:
        self._ledger = ledger
        self._verifier = verifier
        self._public_url = public_url.rstrip("/") if public_url else None
        self._public_routes = public_routes

    def process_resource(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        resource: object,
        params: dict[str, Any],
    ) -> None:
        if resource is None or req.uri_template in self._public_routes:
            return
        if req.method != "OPTIONS" and not hasattr(resource, f"on_{req.method.lower()}"):
            return  # Falcon answers 405 (400 for a method it does not know)
        limit = int(getattr(resource, "body_limit", 0))
        streamed = limit == STREAMED and req.method in BODY_METHODS
        if limit == STREAMED:
            limit = int(getattr(resource, "max_blob", 0)) if streamed else 0
        length = req.content_length or 0
        if length > limit:
            raise Problem(
                "body-too-large",
                f"request body is {length} bytes; at most {limit} are accepted here",
            )
        body = None if streamed else (req.bounded_stream.read() if length else b"")
        origin = self._public_url or f"{req.scheme}://{req.netloc}"
        message = ServerMessage(
            method=req.method, url=target_uri(origin, req.env), headers=req.headers
        )
        verified = self._verifier.verify(message, body)
        member = self._ledger.member_for_key(verified.key_id)
        if member is None:  # revoked between verification and now
            raise Problem("unknown-key", f"key {verified.key_id[:16]} is no longer a member's")
        writers = getattr(resource, "writers", None)
        if req.method in BODY_METHODS and writers is not None and member.role not in writers:
            allowed = ", ".join(sorted(role.value for role in writers))
            raise Problem(
                "forbidden",
                f"{member.name!r} has role {member.role.value}; "
                f"only {allowed} may {req.method} here",
            )
        req.context.member = member
        req.context.body = verified.body
        if streamed:
            req.context.body_sha256 = _sha256_of(verified.digest)


def member_key(ledger: Ledger) -> Callable[[KeyId], PublicKey | None]:
    """The key lookup the verifier uses: the public key of the current member with this id."""

    def lookup(key_id: KeyId) -> PublicKey | None:
        member = ledger.member_for_key(key_id)
        return None if member is None else member.public_key

    return lookup


def _sha256_of(digest: str | None) -> str:
    """The hex sha-256 member of a (verified, signed) Content-Digest field value."""
    if digest is None:
        raise Problem("blob-mismatch", "the upload needs a signed Content-Digest with sha-256")
    try:
        members = http_sf.parse(digest.encode("ascii"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise Problem("blob-mismatch", "Content-Digest is not a structured dictionary") from exc
    if not isinstance(members, dict) or set(members) != {"sha-256"}:
        raise Problem("blob-mismatch", "an upload's Content-Digest must hold exactly sha-256")
    value = members["sha-256"]
    if not isinstance(value, tuple) or not isinstance(value[0], bytes):
        raise Problem("blob-mismatch", "an upload's Content-Digest must hold exactly sha-256")
    return value[0].hex()
