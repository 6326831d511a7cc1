"""Content-addressed blob storage (DESIGN 3 and 5): configs, outputs and logs too large for events.

Layout under ``root`` (the data directory's ``objects/``), git-like::

    root/ab/cdef...   the blob whose SHA-256 is "abcdef..." (2 hex chars, then the other 62)
    root/tmp/         uploads in progress

Invariants:

- A blob is written to a temp file in ``root/tmp`` while it is hashed, fsynced, checked against
  the expected hash and size limit, renamed into place with ``os.replace`` and made durable by
  fsyncing its directory. So a file at a blob's path always holds whole, synced bytes whose hash
  is its name; a crash leaves at most a stray temp file (``clean_tmp`` removes them).
- Putting a blob that is already present is a no-op that returns the same hash; concurrent puts
  of the same bytes each write their own temp file and the renames are atomic.
- A name is accepted only as exactly 64 lowercase hex digits, so no caller-supplied string ever
  chooses a path.
- A blob is served only after it is hashed through (:meth:`BlobStore.open_verified`): bytes that
  no longer hash to their name (a disk fault, an edit) raise :class:`DamagedBlobError` and are
  never handed out as good. Putting the right bytes again replaces a damaged copy.

Every failure is a :class:`BlobError` that says what was expected and what was found, except
damage to a stored blob, which is a :class:`DamagedBlobError` (store damage, not a bad request).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ledger.errors import BlobError, DamagedBlobError
from ledger.store.durable import fsync_dir

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_name(sha256: object) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits; raise BlobError otherwise."""
    if not isinstance(sha256, str) or _HEX64.fullmatch(sha256) is None:
        shown = repr(sha256)[:80]
        raise BlobError(f"blob name: expected 64 lowercase hex digits, found {shown}")
    return sha256


def read_chunks(source: bytes | Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    read = getattr(source, "read", None)
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
    elif callable(read):
        while chunk := read(CHUNK):
            yield _as_bytes(chunk)
    else:
        for chunk in source:
            yield _as_bytes(chunk)


def _as_bytes(chunk: object) -> bytes:
    if not isinstance(chunk, bytes | bytearray | memoryview):
        raise BlobError(f"blob data: expected bytes, found {type(chunk).__name__}")
    return bytes(chunk)


class BlobStore:
    """The blobs of one data directory; ``root`` is its ``objects/`` directory. ``read_only``
    (an auditor's view of a data directory, perhaps a backup) creates nothing."""

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self._root = root
        self._tmp = root / "tmp"
        if read_only:
            return
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobError(f"{root}: cannot create the blob directory: {exc}") from exc

    @property
    def root(self) -> Path:
        return self._root

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives (whether or not it exists)."""
        name = check_name(sha256)
        return self._root / name[:2] / name[2:]

    def put(
        self, data: bytes, expected_sha256: str | None = None, *, max_size: int | None = None
    ) -> str:
        """Store ``data``; return its SHA-256 (hex). Raises BlobError on a hash mismatch or if
        ``data`` is larger than ``max_size``."""
        return self.put_stream([data], expected_sha256, max_size)[0]

    def put_stream(
        self,
        source: bytes | Iterable[bytes] | BinaryIO,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> tuple[str, int]:
        """Store the bytes of ``source`` (bytes, chunks, or a binary file read in 1 MiB chunks);
        return (sha256, size). Stops reading as soon as ``max_size`` is exceeded.

        Raises BlobError (leaving no temp file) if the hash differs from ``expected_sha256``,
        the size exceeds ``max_size``, or the bytes cannot be written.
        """
        if expected_sha256 is not None:
            check_name(expected_sha256)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
        except OSError as exc:
            raise BlobError(f"{self._tmp}: cannot create a temp file: {exc}") from exc
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in read_chunks(source):
                    size += len(chunk)
                    if max_size is not None and size > max_size:
                        raise BlobError(
                            f"blob size: expected at most {max_size} bytes, found more "
                            f"({size} read so far)"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fchmod(out.fileno(), 0o444)  # blobs are immutable
                os.fsync(out.fileno())
            found = digest.hexdigest()
            if expected_sha256 is not None and found != expected_sha256:
                raise BlobError(
                    f"blob hash: expected sha256 {expected_sha256}, found {found} ({size} bytes)"
                )
            final = self.path(found)
            if final.exists() and self._intact(found):
                tmp.unlink()
                return found, size
            shard_created = not final.parent.exists()
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            fsync_dir(final.parent)
            if shard_created:
                fsync_dir(self._root)
            return found, size
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BlobError(f"{self._root}: cannot store a blob: {exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def open(self, sha256: str) -> BinaryIO:
        """Open the blob for reading. Raises BlobError if the name is invalid or it is missing."""
        path = self.path(sha256)
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise BlobError(f"blob {sha256}: expected to be stored, found nothing") from exc
        except OSError as exc:
            raise BlobError(f"blob {sha256}: cannot open: {exc}") from exc

    def open_verified(self, sha256: str) -> BinaryIO:
        """Open the blob for reading once its bytes, read through this very handle, hash to
        ``sha256``; the handle is returned at offset 0. Raises BlobError if the name is invalid
        or it is missing, DamagedBlobError if its bytes hash to something else."""
        handle = self.open(sha256)
        try:
            digest = hashlib.sha256()
            size = 0
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            if digest.hexdigest() != sha256:
                raise DamagedBlobError(
                    sha256, f"stored bytes hash to {digest.hexdigest()} ({size} bytes)"
                )
            handle.seek(0)
        except OSError as exc:
            handle.close()
            raise BlobError(f"blob {sha256}: cannot read: {exc}") from exc
        except BaseException:
            handle.close()
            raise
        return handle

    def _intact(self, sha256: str) -> bool:
        """Whether the stored blob still hashes to its name (a put of the same bytes replaces a
        damaged copy instead of keeping it)."""
        try:
            self.verify(sha256)
        except DamagedBlobError as exc:
            log.warning("%s; replacing it with the bytes just put", exc)
            return False
        except BlobError:
            return False
        return True

    def size(self, sha256: str) -> int:
        """The blob's size in bytes. Raises BlobError if the name is invalid or it is missing."""
        path = self.path(sha256)
        try:
            return path.stat().st_size
        except FileNotFoundError as exc:
            raise BlobError(f"blob {sha256}: expected to be stored, found nothing") from exc
        except OSError as exc:
            raise BlobError(f"blob {sha256}: cannot stat: {exc}") from exc

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored. Raises BlobError if the name is invalid."""
        return self.path(sha256).is_file()

    def verify(self, sha256: str) -> int:
        """Re-hash the stored blob; return its size. Raises BlobError if it is missing or cannot
        be read, DamagedBlobError if its bytes no longer hash to its name."""
        with self.open_verified(sha256) as blob:
            return blob.seek(0, os.SEEK_END)

    def names(self) -> Iterator[str]:
        """The name of every stored blob, in order."""
        if not self._root.is_dir():
            return
        for shard in sorted(self._root.iterdir()):
            if len(shard.name) != 2 or not shard.is_dir():
                continue  # tmp/
            for blob in sorted(shard.iterdir()):
                name = shard.name + blob.name
                if _HEX64.fullmatch(name):
                    yield name

    def close(self) -> None:
        """Nothing to release: every put is synced before it returns."""

    def clean_tmp(self) -> int:
        """Remove leftover temp files (run at startup, when no put is in flight); return how
        many were removed."""
        removed = 0
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed
