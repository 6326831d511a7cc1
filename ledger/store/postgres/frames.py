"""The entries of a PostgreSQL ledger as one byte sequence (pure: bytes in, values out).

Each entry is framed exactly as the embedded store frames it in ``entries.log``
(:func:`ledger.store.records.encode_record`), and the log is the concatenation of the frames in
index order. So ``offset(i)`` and the log digest a snapshot records are the same over either
store holding the same entries: a data directory's snapshot stays valid when its entries are
copied to a database (``pht store copy``) and back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ledger.store.records import HEADER_SIZE, encode_record


def frame(payload: bytes) -> bytes:
    """``payload`` as an ``entries.log`` record."""
    return encode_record(payload)


def framed_size(payload: bytes) -> int:
    return HEADER_SIZE + len(payload)


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
