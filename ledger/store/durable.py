"""Durable file primitives shared by the entry store and the blob store (POSIX).

A rename is durable only once the directory holding it is fsynced, and a file's bytes only once
the file is; ``write_atomic`` does both in the order that leaves either the old or the new file
whole after a crash.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ledger.errors import StoreError


def datasync(fd: int) -> None:
    """fdatasync where the platform has it (it still syncs a changed file size), else fsync."""
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def fsync_dir(path: Path) -> None:
    """Make the directory entries of the directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole:
    temp file in the same directory, fsync, rename over ``path``, fsync the directory.

    Raises StoreError if it cannot; the temp file is removed then.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write atomically: {exc}") from exc


def pread_all(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``, or fewer only at the end of the file."""
    parts: list[bytes] = []
    while size > 0:
        part = os.pread(fd, size, offset)
        if not part:
            break
        parts.append(part)
        size -= len(part)
        offset += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (looping over short writes)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
