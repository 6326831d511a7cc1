"""The files of one data directory's entry log, and the LOCK that gives them to one process.

Invariant: the files are open only while their process holds the LOCK (an exclusive flock), and a
directory or file this module creates has its directory entry fsynced before the store uses it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ledger.errors import StoreError
from ledger.store.durable import fsync_dir

LOG_NAME = "entries.log"
INDEX_NAME = "entries.idx"
LOCK_NAME = "LOCK"
CHECKPOINT_NAME = "checkpoint"  # the latest signed checkpoint (EntryStore.save_checkpoint)


def open_files(data_dir: Path) -> tuple[int, int, int]:
    """Open (creating if missing) the files of the entry log in ``data_dir`` and take its LOCK;
    return their descriptors: (lock, log, index).

    Files in the data directory::

        LOCK         flock'ed exclusively by the one process that has the store open
        entries.log  the records, one per entry, in entry order (format in
                     :mod:`ledger.store.records`: b"PHTE" | payload length uint32 LE |
                     CRC-32 of payload uint32 LE | payload)
        entries.idx  derived: uint64 LE byte offset of each entry's record; rebuildable from the log

    Raises StoreError if another process holds the directory or it cannot be read or written;
    whatever was opened is closed again then.
    """
    fds: list[int] = []
    try:
        if not data_dir.is_dir():
            data_dir.mkdir(parents=True)
            fsync_dir(data_dir.parent)
        fds.append(lock_dir(data_dir))
        lock_fd = fds[0]
        log_fd, log_created = _open_rw(data_dir / LOG_NAME)
        fds.append(log_fd)
        idx_fd, idx_created = _open_rw(data_dir / INDEX_NAME)
        fds.append(idx_fd)
        if log_created or idx_created:
            fsync_dir(data_dir)
        return lock_fd, log_fd, idx_fd
    except BaseException as exc:
        close_all(fds)
        if isinstance(exc, OSError):
            raise cannot_open(data_dir, exc) from exc
        raise


def lock_dir(data_dir: Path) -> int:
    """Take ``data_dir``'s LOCK (creating it): one process per data directory, whatever keeps
    its entries. Returns the descriptor that holds it; StoreError if another process does."""
    lock_fd, _ = _open_rw(data_dir / LOCK_NAME)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(lock_fd)
        raise StoreError(f"{data_dir}: already open (LOCK held by another process)") from exc
    except BaseException:
        os.close(lock_fd)
        raise
    return lock_fd


def close_all(fds: list[int]) -> None:
    """Close ``fds``, the last opened first."""
    for fd in reversed(fds):
        os.close(fd)


def cannot_open(data_dir: Path, exc: OSError) -> StoreError:
    return StoreError(f"{data_dir}: cannot open the entry store: {exc}")


def _open_rw(path: Path) -> tuple[int, bool]:
    existed = path.exists()
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), not existed
