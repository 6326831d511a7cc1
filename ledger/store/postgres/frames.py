"""The entries of a PostgreSQL ledger as one byte sequence (pure: bytes in, values out).

Each entry is framed as its length (4 bytes, big-endian) then its canonical bytes; the log is
the concatenation of the frames in index order. ``offset(i)`` is where entry ``i``'s frame starts,
and the snapshot's log digest is the SHA-256 of the frames before its size, as for the embedded
store's ``entries.log`` (:class:`ledger.store.Store`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ledger.errors import StoreError

LENGTH_BYTES = 4
MAX_PAYLOAD = (1 << 32) - 1


def frame(payload: bytes) -> bytes:
    """``payload`` with its length in front."""
    if len(payload) > MAX_PAYLOAD:
        raise StoreError(f"an entry of {len(payload)} bytes does not fit a frame")
    return len(payload).to_bytes(LENGTH_BYTES, "big") + payload


def framed_size(payload: bytes) -> int:
    return LENGTH_BYTES + len(payload)


def starts(first: int, payloads: Iterable[bytes]) -> list[int]:
    """The frame offsets of ``payloads`` appended at byte ``first``."""
    out = []
    at = first
    for payload in payloads:
        out.append(at)
        at += framed_size(payload)
    return out


class LogDigest:
    """The running SHA-256 and length of the framed log."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.length = 0

    def update(self, payloads: Iterable[bytes]) -> None:
        for payload in payloads:
            self._sha.update(frame(payload))
            self.length += framed_size(payload)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()
