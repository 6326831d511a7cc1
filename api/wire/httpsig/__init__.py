"""PHT's profile of HTTP Message Signatures (RFC 9421): every request to the registry and to a
FileService is signed by a member key.

- :mod:`~api.wire.httpsig.profile`: what both sides agree on (components, parameters, freshness,
  the ``@target-uri`` of a received request).
- :mod:`~api.wire.httpsig.signer` and :mod:`~api.wire.httpsig.verifier`: the two sides, each a
  general path through the ``http-message-signatures`` package behind the fast path for PHT's own
  strict form (:mod:`~api.wire.httpsig._fast_strict`).
- :mod:`~api.wire.httpsig.replay`: the memory that accepts a nonce once.
"""

from api.wire.httpsig.profile import (
    ALGORITHM,
    BODY_COMPONENTS,
    BODY_METHODS,
    COMPONENTS,
    DEFAULT_SKEW,
    DEFAULT_WINDOW,
    LABEL,
    NONCE,
    REQUEST_REPLAYED,
    SIGNATURE_EXPIRED,
    TAG,
    UNAUTHENTICATED,
    UNKNOWN_KEY,
    KeyLookup,
    Message,
    ServerMessage,
    Verified,
    accept_signature,
    raw_target_from_wsgi,
    target_uri,
)
from api.wire.httpsig.replay import ReplayCache
from api.wire.httpsig.signer import RequestSigner
from api.wire.httpsig.verifier import RequestVerifier

__all__ = [
    "ALGORITHM",
    "BODY_COMPONENTS",
    "BODY_METHODS",
    "COMPONENTS",
    "DEFAULT_SKEW",
    "DEFAULT_WINDOW",
    "LABEL",
    "NONCE",
    "REQUEST_REPLAYED",
    "SIGNATURE_EXPIRED",
    "TAG",
    "UNAUTHENTICATED",
    "UNKNOWN_KEY",
    "KeyLookup",
    "Message",
    "ReplayCache",
    "RequestSigner",
    "RequestVerifier",
    "ServerMessage",
    "Verified",
    "accept_signature",
    "raw_target_from_wsgi",
    "target_uri",
]
