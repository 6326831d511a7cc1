"""``PostgresBlobs``: content-addressed blobs in the ledger's database (table ``pht_blobs``).

The same contract as :class:`ledger.store.blobs.BlobStore` for what the registry asks of it
(``exists``, ``size``, ``put``, ``put_stream``, ``open_verified``): a blob is stored under the
SHA-256 of its bytes, checked against the expected name and size limit before the INSERT commits;
putting a stored blob again is a no-op (a damaged copy is replaced); a blob is handed out only
after its bytes hash to its name (:class:`DamagedBlobError` otherwise).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from ledger.errors import BlobError, DamagedBlobError
from ledger.store.blobs import check_name, read_chunks
from ledger.store.postgres.schema import Session


class PostgresBlobs:
    """The blobs of the ledger in ``dsn``; one connection of its own (back after an outage)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._session = Session(dsn)
        self._lock = threading.Lock()

    def _run(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:  # StoreError when the database is gone: 503, try again
            return self._session.query(sql, params)

    def exists(self, sha256: str) -> bool:
        return bool(self._run("SELECT 1 FROM pht_blobs WHERE sha256 = %s", (check_name(sha256),)))

    def size(self, sha256: str) -> int:
        rows = self._run("SELECT size FROM pht_blobs WHERE sha256 = %s", (check_name(sha256),))
        if not rows:
            raise BlobError(f"blob {sha256}: expected to be stored, found nothing")
        return int(rows[0][0])

    def put(
        self, data: bytes, expected_sha256: str | None = None, *, max_size: int | None = None
    ) -> str:
        return self.put_stream([data], expected_sha256, max_size)[0]

    def put_stream(
        self,
        source: bytes | Iterable[bytes] | BinaryIO,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> tuple[str, int]:
        if expected_sha256 is not None:
            check_name(expected_sha256)
        digest = hashlib.sha256()
        parts = []
        size = 0
        for chunk in read_chunks(source):
            size += len(chunk)
            if max_size is not None and size > max_size:
                raise BlobError(
                    f"blob size: expected at most {max_size} bytes, found more ({size} read so far)"
                )
            digest.update(chunk)
            parts.append(chunk)
        found = digest.hexdigest()
        if expected_sha256 is not None and found != expected_sha256:
            raise BlobError(
                f"blob hash: expected sha256 {expected_sha256}, found {found} ({size} bytes)"
            )
        # A stored copy whose bytes no longer hash to the name is replaced.
        self._run(
            "INSERT INTO pht_blobs (sha256, size, data) VALUES (%s, %s, %s) "
            "ON CONFLICT (sha256) DO UPDATE SET size = EXCLUDED.size, data = EXCLUDED.data "
            "WHERE sha256(pht_blobs.data) <> decode(pht_blobs.sha256, 'hex')",
            (found, size, b"".join(parts)),
        )
        return found, size

    def open_verified(self, sha256: str) -> BinaryIO:
        rows = self._run("SELECT data FROM pht_blobs WHERE sha256 = %s", (check_name(sha256),))
        if not rows:
            raise BlobError(f"blob {sha256}: expected to be stored, found nothing")
        data = bytes(rows[0][0])
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise DamagedBlobError(sha256, f"stored bytes hash to {found} ({len(data)} bytes)")
        return io.BytesIO(data)

    def names(self) -> Iterator[str]:
        """The name of every stored blob, in order."""
        for (name,) in self._run("SELECT sha256 FROM pht_blobs ORDER BY sha256", ()):
            yield str(name)

    def verify(self, sha256: str) -> int:
        with self.open_verified(sha256) as blob:
            return blob.seek(0, io.SEEK_END)

    def close(self) -> None:
        with self._lock:
            self._session.close()
