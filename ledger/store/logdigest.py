"""The SHA-256 of the whole entry log, which a snapshot records so that the next open can check,
with one sequential hash, that the entries the snapshot covers are still the bytes it was taken
over.

Invariant: once started, it covers exactly the log's bytes: the store feeds it the very bytes it
appends, once they are durable, and drops it when the log is cut.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ledger.errors import StoreError
from ledger.store.records import SCAN_CHUNK, Reader


class LogDigest:
    """A running SHA-256 of the entry log; start it with :meth:`of_log`."""

    __slots__ = ("_hasher",)

    def __init__(self) -> None:
        self._hasher = hashlib.sha256()

    @classmethod
    def of_log(cls, read: Reader, split: int, end: int, *, log_path: Path) -> tuple[str, LogDigest]:
        """Hash the log's first ``end`` bytes once (one sequential read): return the SHA-256
        (hex) of its first ``split`` bytes, and the digest of all ``end``, to keep up to date.
        Raises StoreError when the log is shorter or cannot be read."""
        digest = cls()
        prefix = ""
        position = 0
        try:
            while True:
                if position == split:
                    prefix = digest.hexdigest()
                if position == end:
                    break
                limit = split if position < split else end
                chunk = read(position, min(SCAN_CHUNK, limit - position))
                if not chunk:
                    raise StoreError(f"{log_path}: shorter than {end} bytes")
                digest.update(chunk)
                position += len(chunk)
        except OSError as exc:
            raise StoreError(f"{log_path}: cannot read: {exc}") from exc
        return prefix, digest

    def update(self, written: bytes) -> None:
        """Take in ``written``, the bytes just appended to the log."""
        self._hasher.update(written)

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()
