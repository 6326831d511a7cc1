"""Domain-separated signatures (DESIGN 2).

Every signature in PHT is over ``b"pht/v1/" + purpose + b"\\n" + message`` so that bytes signed
for one purpose (an event) can never be presented as another (a request).
"""

from __future__ import annotations

from enum import StrEnum

from crypto.keys import PublicKey, SigningKey


class Purpose(StrEnum):
    EVENT = "event"
    REQUEST = "request"
    TRANSFER = "transfer"


def domain_bytes(purpose: Purpose, message: bytes) -> bytes:
    return b"pht/v1/" + purpose.value.encode("ascii") + b"\n" + message


def sign(key: SigningKey, purpose: Purpose, message: bytes) -> bytes:
    return key.sign(domain_bytes(purpose, message))


def verify(key: PublicKey, purpose: Purpose, message: bytes, signature: bytes) -> None:
    """Raise :class:`crypto.errors.BadSignatureError` unless ``signature`` verifies."""
    key.verify(signature, domain_bytes(purpose, message))
