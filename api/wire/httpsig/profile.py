"""PHT's profile of HTTP Message Signatures (RFC 9421) for requests to its servers.

Both sides use the ``http-message-signatures`` package (the client its ``prepare``, the servers
its verifier), each behind a fast path for the strict form PHT's own client writes
(:mod:`api.wire.httpsig._fast_strict`); this module fixes what they agree on:

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
- **Replay**: the servers remember ``(keyid, nonce)`` of every accepted request until its
  ``created`` leaves the window, and refuse a second use (:mod:`api.wire.httpsig.replay`).

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

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from http_message_signatures import HTTPSignatureAlgorithm, InvalidSignature
from http_message_signatures.exceptions import HTTPMessageSignaturesException

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

# Resolves a key id to the current member's public key (None: no current member).
KeyLookup = Callable[[KeyId], PublicKey | None]


class Ed25519Algorithm(HTTPSignatureAlgorithm):
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


class Message(Protocol):
    """What the signer needs of a request: ``requests.PreparedRequest`` has all three."""

    method: str | None
    url: str | None
    headers: Any


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """A received request as the verifier sees it (method, full target URI, header lines)."""

    method: str
    url: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature verified: who signed it, and the signature's metadata."""

    key_id: KeyId
    created: int
    nonce: str
    body: bytes
    digest: str | None  # the signed Content-Digest field value, when covered


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


def accept_signature() -> str:
    """The ``Accept-Signature`` field (RFC 9421 section 5.1) a 401 answer carries."""
    components = " ".join(f'"{c}"' for c in BODY_COMPONENTS)
    return f'{LABEL}=({components});created;nonce;alg="{ALGORITHM}";tag="{TAG}"'
