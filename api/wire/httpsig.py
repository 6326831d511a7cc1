"""PHT's profile of HTTP Message Signatures (RFC 9421) for requests to the registry.

Both sides use the ``http-message-signatures`` package (the client its ``prepare``, the registry
its verifier, behind a strict fast path for the exact form the client writes: see
:class:`RequestVerifier`); this module fixes what they agree on:

- **Algorithm** ``ed25519`` (RFC 9421 3.3.6) with the member's own key; ``keyid`` is the member's
  key id (hex SHA-256 of the raw public key), a lookup hint: the key that verifies is the one the
  ledger's current membership holds for that id.
- **Covered components**: ``"@method"``, ``"@target-uri"`` and, on every request that carries a
  body (always for POST and PUT, even an empty one), ``"content-digest"`` (RFC 9530, ``sha-256``),
  which the verifier checks against the bytes it received.
- **Parameters**: ``created`` (required), ``keyid`` (required), ``alg="ed25519"``, ``nonce``
  (required, 16-64 URL-safe characters; the client sends 32 random hex digits) and
  ``tag="pht/v1/request"`` (required). Exactly one signature carries that tag; others are
  ignored.
- **Freshness**: ``created`` must lie within ``window`` seconds before the verifier's clock and at
  most ``skew`` seconds after it, and not before ``not_before`` (the registry passes its start time,
  so a request seen by an earlier process cannot be replayed into a fresh one whose replay memory is
  empty). ``expires``, if present, must not have passed.
- **Replay**: the registry remembers ``(keyid, nonce)`` of every accepted request until its
  ``created`` leaves the window, and refuses a second use (:class:`ReplayCache`).

Domain separation (DESIGN 2): the bytes signed are exactly RFC 9421's signature base, so any RFC
9421 implementation can verify them; they are not wrapped in ``b"pht/v1/request\\n"``, which would
make the signatures non-standard. Separation comes from the format itself and from the signed
``tag``: a signature base always begins with a quoted component identifier (``"@method": ...``),
whereas event and transfer signatures cover bytes beginning with ``pht/v1/`` and checkpoint notes
(signed by the log key, never a member key) begin with an origin that cannot start with ``"``. So
no bytes a member signs for one purpose are valid for another, and ``tag`` tells RFC 9421 verifiers
of other applications that this signature is a PHT request.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureAlgorithm,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from api.errors import RequestAuthError
from crypto import BadSignatureError, KeyId, PublicKey, SigningKey

TAG = "pht/v1/request"
LABEL = "pht"
ALGORITHM = "ed25519"
COMPONENTS = ("@method", "@target-uri")
BODY_COMPONENTS = (*COMPONENTS, "content-digest")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
DEFAULT_WINDOW = 60
DEFAULT_SKEW = 5
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")

# Problem slugs of refused signatures (see api.wire.problems).
UNAUTHENTICATED = "unauthenticated"
UNKNOWN_KEY = "unknown-key"
SIGNATURE_EXPIRED = "signature-expired"
REQUEST_REPLAYED = "request-replayed"


class _Ed25519(HTTPSignatureAlgorithm):
    """RFC 9421 ``ed25519`` over PHT's own key types (the private key never leaves crypto)."""

    algorithm_id = ALGORITHM

    def __init__(
        self, public_key: PublicKey | None = None, private_key: SigningKey | None = None
    ) -> None:
        self.public_key = public_key
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        if self.private_key is None:
            raise HTTPMessageSignaturesException("no private key to sign with")
        return self.private_key.sign(message)

    def verify(self, signature: bytes, message: bytes) -> None:
        if self.public_key is None:
            raise InvalidSignature("no public key to verify with")
        try:
            self.public_key.verify(signature, message)
        except BadSignatureError as exc:
            raise InvalidSignature("signature does not verify") from exc


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key: SigningKey) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> SigningKey:
        if key_id != self._key.key_id:
            raise HTTPMessageSignaturesException(f"no private key for {key_id[:16]}")
        return self._key


class Message(Protocol):
    """What the signer needs of a request: ``requests.PreparedRequest`` has all three."""

    method: str | None
    url: str | None
    headers: Any


class RequestSigner:
    """Signs outgoing requests with one member key (the client side of the profile).

    The package builds the signature base and parameters (``HTTPMessageSigner.prepare``, the API
    it offers for signers that hold the key themselves); the key signs the base, and the two
    signature fields are written under the label ``pht``. (``HTTPMessageSigner.apply`` would
    re-derive the whole base to check it again, doubling the cost of signing for nothing: the
    message is not touched in between.)

    For the requests PHT's own client makes (an upper-case method, a target URI in the strict
    form the verifier's fast path reads, a plain nonce) the base is written directly, as the
    verifier's fast path reads it: about 30 us instead of the package's 200. A differential test
    holds the two to the same bytes.
    """

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self._signer = HTTPMessageSigner(signature_algorithm=_Ed25519, key_resolver=_OneKey(key))

    def sign(
        self,
        message: Message,
        *,
        body: bytes | None,
        created: int,
        nonce: str,
        digest_sha256: str | None = None,
    ) -> None:
        """Add ``Content-Digest`` (for a body), ``Signature-Input`` and ``Signature`` in place.

        ``body`` must be the exact bytes sent (``None`` for a bodiless request; POST and PUT
        always get a digest, of ``b""`` if need be). For a body streamed from a file, pass
        ``body=None`` and its hex ``digest_sha256`` instead.
        """
        for name in ("Content-Digest", "Signature-Input", "Signature"):
            if name in message.headers:
                del message.headers[name]
        components: tuple[str, ...] = COMPONENTS
        if digest_sha256 is not None:
            encoded = base64.b64encode(bytes.fromhex(digest_sha256)).decode("ascii")
            message.headers["Content-Digest"] = f"sha-256=:{encoded}:"
            components, body = BODY_COMPONENTS, None
        elif body is None and (message.method or "").upper() in BODY_METHODS:
            body = b""
        if self._sign_strict(message, body, digest_sha256, created, nonce):
            return
        try:
            prepared = self._signer.prepare(
                message,
                key_id=self.key.key_id,
                created=datetime.fromtimestamp(created, UTC),
                nonce=nonce,
                label=LABEL,
                tag=TAG,
                covered_component_ids=components,
                body=body,
                use_existing_digest=digest_sha256 is not None,
            )
        except HTTPMessageSignaturesException as exc:
            raise RequestAuthError(UNAUTHENTICATED, f"cannot sign request: {exc}") from exc
        signature = base64.b64encode(self.key.sign(prepared.signature_base)).decode("ascii")
        message.headers["Signature-Input"] = f"{LABEL}={prepared.signature_params}"
        message.headers["Signature"] = f"{LABEL}=:{signature}:"

    def _sign_strict(
        self,
        message: Message,
        body: bytes | None,
        digest_sha256: str | None,
        created: int,
        nonce: str,
    ) -> bool:
        """Sign a request in the strict form directly; False (nothing written) for any other."""
        method, url = message.method or "", message.url or ""
        if not (
            _METHOD.fullmatch(method)
            and _STRICT_URL.fullmatch(url)
            and _NONCE.fullmatch(nonce)
            and 0 < created < 10**12
        ):
            return False
        if body is not None:
            encoded = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
            message.headers["Content-Digest"] = f"sha-256=:{encoded}:"
        digest = (
            message.headers.get("Content-Digest") if body is not None or digest_sha256 else None
        )
        covered = (
            '("@method" "@target-uri" "content-digest")' if digest else '("@method" "@target-uri")'
        )
        params = (
            f'{covered};created={created};keyid="{self.key.key_id}";alg="ed25519";'
            f'nonce="{nonce}";tag="{TAG}"'
        )
        base = _strict_base(method, url, digest, params)
        signature = base64.b64encode(self.key.sign(base)).decode("ascii")
        message.headers["Signature-Input"] = f"{LABEL}={params}"
        message.headers["Signature"] = f"{LABEL}=:{signature}:"
        return True


def _strict_base(method: str, url: str, digest: str | None, params: str) -> bytes:
    """The RFC 9421 signature base of a strict-form request (what both fast paths sign)."""
    digest_line = f'"content-digest": {digest}\n' if digest else ""
    return (
        f'"@method": {method}\n"@target-uri": {url}\n{digest_line}"@signature-params": {params}'
    ).encode("ascii")


_METHOD = re.compile(r"[A-Z]{1,16}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """A received request as the verifier sees it (method, full target URI, header lines)."""

    method: str
    url: str
    headers: Mapping[str, str]


def target_uri(origin: str, environ: Mapping[str, Any]) -> str:
    """The ``@target-uri`` of a received request: ``origin`` (``scheme://authority``, from the
    Host header or the configured public URL) and the request target exactly as sent."""
    return origin + raw_target_from_wsgi(environ)


def raw_target_from_wsgi(environ: Mapping[str, Any]) -> str:
    """The request target as sent: waitress keeps it in ``REQUEST_URI``; otherwise rebuild it."""
    raw = environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return raw
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    quoted = urllib.parse.quote(path.encode("latin-1"), safe="/:@!$&'()*+,;=-._~%")
    query = environ.get("QUERY_STRING", "")
    return quoted + ("?" + query if query else "")


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature verified: who signed it, and the signature's metadata."""

    key_id: KeyId
    created: int
    nonce: str
    body: bytes
    digest: str | None  # the signed Content-Digest field value, when covered


# Resolves a key id to the current member's public key (None: no current member).
KeyLookup = Callable[[KeyId], PublicKey | None]


class _Stale(InvalidSignature):
    pass


class _MemberKeys(HTTPSignatureKeyResolver):
    """Resolves keyids through the ledger's current membership, remembering what it found."""

    def __init__(self, lookup: KeyLookup) -> None:
        self._lookup = lookup
        self.unknown: str | None = None

    def resolve_public_key(self, key_id: str) -> PublicKey | None:
        key = self._lookup(KeyId(key_id)) if isinstance(key_id, str) else None
        if key is None:
            self.unknown = key_id
        return key


class _Verifier(HTTPMessageVerifier):
    """The package's verifier with the freshness rule on an injected clock."""

    def __init__(
        self,
        resolver: _MemberKeys,
        *,
        now: float,
        window: int,
        skew: int,
        not_before: int,
    ) -> None:
        super().__init__(signature_algorithm=_Ed25519, key_resolver=resolver)
        self._now = now
        self._window = window
        self._skew = skew
        self._not_before = not_before

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        params = sig_input.params
        created = params.get("created")
        if type(created) is not int:
            raise InvalidSignature('the signature needs an integer "created" parameter')
        if created > self._now + self._skew:
            raise _Stale(
                f"created {created} is {created - int(self._now)} s in the future; "
                "check the client's clock"
            )
        if created < self._now - self._window:
            raise _Stale(
                f"created {created} is {int(self._now) - created} s old; signatures are valid "
                f"for {self._window} s"
            )
        if created < self._not_before:
            raise _Stale("the signature predates this registry process; sign the request again")
        expires = params.get("expires")
        if expires is not None and (type(expires) is not int or expires < self._now):
            raise _Stale("the signature has expired")


class ReplayCache:
    """``(keyid, nonce)`` pairs seen within the freshness window; refuses a second use.

    Bounded: entries leave when their ``created`` falls out of the window, and a cache holding
    ``capacity`` live entries refuses new requests (the registry is then overloaded far beyond
    what it can append anyway) rather than forgetting a nonce early.
    """

    def __init__(self, *, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._seen: dict[tuple[str, str], float] = {}
        self._expiry: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, key_id: str, nonce: str, *, until: float, now: float) -> None:
        """Record a fresh use; raise :class:`RequestAuthError` (``request-replayed``) on reuse."""
        item = (key_id, nonce)
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                _, old = heapq.heappop(self._expiry)
                self._seen.pop(old, None)
            if item in self._seen:
                raise RequestAuthError(
                    REQUEST_REPLAYED,
                    f"nonce {nonce[:32]} of key {key_id[:16]} was already used; "
                    "sign every request afresh",
                )
            if len(self._seen) >= self._capacity:
                raise RequestAuthError(
                    REQUEST_REPLAYED, "too many recent requests to remember; try again shortly"
                )
            self._seen[item] = until
            heapq.heappush(self._expiry, (until, item))


class RequestVerifier:
    """Verifies requests against the profile above (the server side).

    Two paths reach the same verdict. The *strict path* handles exactly the canonical form that
    :class:`RequestSigner` produces (one ``pht`` signature, parameters in the package's order,
    a ``sha-256`` digest): it rebuilds the RFC 9421 signature base with one format string and
    verifies it, about four times cheaper than the package's general parser, which matters at
    hundreds of appends per second. Anything else (other parameter orders, several signatures,
    other digest algorithms) and every refusal go through the package's ``HTTPMessageVerifier``,
    so errors are always the package's. The strict path never accepts what the package refuses:
    a differential test (``tests/api/test_httpsig.py``) runs both on the same genuine and
    tampered requests.
    """

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        clock: Callable[[], float],
        window: int = DEFAULT_WINDOW,
        skew: int = DEFAULT_SKEW,
        not_before: int = 0,
        replay: ReplayCache | None = None,
        strict_path: bool = True,
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._window = window
        self._skew = skew
        self._not_before = not_before
        self._strict_path = strict_path
        self.replay = replay if replay is not None else ReplayCache()

    def verify(self, message: ServerMessage, body: bytes | None) -> Verified:
        """Return who signed ``message``; raise :class:`RequestAuthError` naming why not.

        The signature must follow the profile, verify under the current member key named by
        ``keyid``, be fresh, cover ``Content-Digest`` when the method carries a body, and not have
        been used before. The digest is checked against ``body``; pass ``None`` for a body the
        caller streams later, and check it against ``Verified.digest`` then.
        """
        now = self._clock()
        signed = self._strict(message, body, now) if self._strict_path else None
        if signed is None:
            signed = self._general(message, body, now)
        key_id, created, nonce, digest = signed
        self.replay.remember(key_id, nonce, until=created + self._window + self._skew + 1, now=now)
        return Verified(
            key_id=key_id, created=created, nonce=nonce, body=body or b"", digest=digest
        )

    def _fresh(self, created: int, now: float) -> bool:
        return now - self._window <= created <= now + self._skew and created >= self._not_before

    def _strict(
        self, message: ServerMessage, body: bytes | None, now: float
    ) -> tuple[KeyId, int, str, str | None] | None:
        """The signer's identity if ``message`` is in canonical form and verifies; else None."""
        fields: dict[str, str] = {}
        for name, value in message.headers.items():
            lower = name.lower().replace("_", "-")
            if lower in _STRICT_FIELDS:
                if lower in fields:
                    return None  # repeated field lines: the package's parser decides
                fields[lower] = value.strip(" \t")
        params = _STRICT_INPUT.fullmatch(fields.get("signature-input", ""))
        signature = _STRICT_SIGNATURE.fullmatch(fields.get("signature", ""))
        if params is None or signature is None:
            return None
        covered, created_text, key_id, nonce = params.groups()
        created = int(created_text)
        url = message.url
        if not self._fresh(created, now) or not _STRICT_URL.fullmatch(url):
            return None
        digest = fields.get("content-digest")
        has_body = message.method in BODY_METHODS or bool(body)
        if covered.endswith('"content-digest"'):
            match = _STRICT_DIGEST.fullmatch(digest or "")
            if match is None or digest is None:
                return None
            if body is not None and hashlib.sha256(body).digest() != _b64(match.group(1)):
                return None
        elif has_body:
            return None
        else:
            digest = None
        base = _strict_base(message.method, url, digest, fields["signature-input"][4:])
        key = self._lookup(KeyId(key_id))
        if key is None:
            return None
        try:
            key.verify(_b64(signature.group(1)), base)
        except BadSignatureError:
            return None
        return KeyId(key_id), created, nonce, digest

    def _general(
        self, message: ServerMessage, body: bytes | None, now: float
    ) -> tuple[KeyId, int, str, str | None]:
        """The package's verifier; raises :class:`RequestAuthError` with the reason."""
        if not _has_signature(message.headers):
            raise RequestAuthError(
                UNAUTHENTICATED,
                "the request carries no HTTP message signature (Signature-Input and Signature "
                f"with tag {TAG!r})",
            )
        resolver = _MemberKeys(self._lookup)
        verifier = _Verifier(
            resolver, now=now, window=self._window, skew=self._skew, not_before=self._not_before
        )
        has_body = message.method in BODY_METHODS or bool(body)
        try:
            results = verifier.verify(
                message,
                max_age=None,
                expect_tag=TAG,
                require_components=BODY_COMPONENTS if has_body else COMPONENTS,
                body=body if has_body else None,
            )
        except _Stale as exc:
            raise RequestAuthError(SIGNATURE_EXPIRED, str(exc)) from exc
        except HTTPMessageSignaturesException as exc:
            if resolver.unknown is not None:
                raise RequestAuthError(
                    UNKNOWN_KEY,
                    f"key {str(resolver.unknown)[:64]} is not the key of a current member",
                ) from exc
            raise RequestAuthError(UNAUTHENTICATED, f"request signature refused: {exc}") from exc
        if len(results) != 1:
            raise RequestAuthError(
                UNAUTHENTICATED, f"expected one signature tagged {TAG!r}, found {len(results)}"
            )
        params = results[0].parameters
        nonce = params.get("nonce")
        if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
            raise RequestAuthError(
                UNAUTHENTICATED, "the signature needs a nonce of 16-64 characters [A-Za-z0-9_-]"
            )
        digest = results[0].covered_components.get('"content-digest"')
        return KeyId(str(params["keyid"])), int(params["created"]), nonce, digest


# The strict path: exactly what RequestSigner writes (the package's serialization, our order).
_STRICT_FIELDS = frozenset({"signature-input", "signature", "content-digest"})
_STRICT_INPUT = re.compile(
    r'pht=\(("@method" "@target-uri"(?: "content-digest")?)\)'
    r";created=([1-9][0-9]{0,11});keyid=\"([0-9a-f]{64})\";alg=\"ed25519\""
    r';nonce="([A-Za-z0-9_-]{16,64})";tag="pht/v1/request"'
)
_STRICT_SIGNATURE = re.compile(r"pht=:([A-Za-z0-9+/]{86}==):")
_STRICT_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")
# An absolute http(s) URL in RFC 3986 syntax (the package's grammar, minus userinfo, IPv6 and
# fragments), with a non-empty path: the package resolves @target-uri to exactly this text.
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_STRICT_URL = re.compile(
    rf"https?://[A-Za-z0-9.-]+(?::[0-9]{{1,5}})?(?:/{_PCHAR}*)+(?:\?(?:{_PCHAR}|[/?])*)?"
)


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _has_signature(headers: Mapping[str, str]) -> bool:
    names = {name.lower() for name in headers}
    return "signature" in names and "signature-input" in names


def accept_signature() -> str:
    """The ``Accept-Signature`` field (RFC 9421 section 5.1) a 401 answer carries."""
    components = " ".join(f'"{c}"' for c in BODY_COMPONENTS)
    return f'{LABEL}=({components});created;nonce;alg="{ALGORITHM}";tag="{TAG}"'
