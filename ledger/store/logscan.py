"""Walks of the entry log's records: the recovery of :class:`ledger.store.entries.EntryStore` at
open, and the full scans that check or rebuild its index and say what its records hold.

Invariant: a bad record with nothing valid after it is a torn tail (never acknowledged) and is cut;
one followed by a valid record is damage inside the log, and is never cut without the operator's
explicit override. Full scans change nothing: they return what they found or raise.
"""

from __future__ import annotations

import bisect
import logging
import operator
import os
from array import array
from pathlib import Path

from ledger.errors import CorruptStoreError, DamagedEntryError
from ledger.store.durable import pread_all, pwrite_all
from ledger.store.records import (
    HEADER_SIZE,
    INDEX_ITEM,
    Reader,
    find_valid_record,
    header_problem,
    index_from_bytes,
    index_to_bytes,
    record_problem,
    scan,
)

logger = logging.getLogger(__name__)

WALK_BACK = 4096  # index items examined, newest first, before open falls back to a full scan


def recover(
    read: Reader,
    *,
    log_fd: int,
    idx_fd: int,
    log_path: Path,
    idx_path: Path,
    cut_corrupt_tail: bool,
) -> tuple[array[int], int]:
    """Recover the log and its index at open; return (the offset of every record, the log's end).

    Fast because it trusts the index: only the last plausible index item is checked (it must
    point at a valid record that follows its predecessor; :func:`trusted_prefix`), then the log
    is scanned from there. An index that lags the log is extended by the scan; one that runs past
    it is walked back; either is rewritten and fsynced. Damage in the middle of the log is
    therefore not noticed here (:func:`scan_all` finds it).

    A bad record the scan hits with no valid record after it is a torn tail: it is cut (logging
    how many bytes) and the log fsynced. Followed by a valid record it is damage, not a torn tail:
    recovery refuses to cut acknowledged data and raises CorruptStoreError, unless
    ``cut_corrupt_tail`` (the operator's explicit override). Power loss on file systems that
    persist a batch's pages out of order could, in principle, leave such a pattern inside the
    last unacknowledged batch; the override covers it. Raises OSError when the files fail.
    """
    size = os.fstat(log_fd).st_size
    idx_size = os.fstat(idx_fd).st_size
    indexed = index_from_bytes(pread_all(idx_fd, idx_size, 0))
    trusted = trusted_prefix(read, indexed, size)
    if trusted < len(indexed):
        logger.warning(
            "%s: %d of %d index items do not match the log; %s",
            idx_path,
            len(indexed) - trusted,
            len(indexed),
            "rebuilding it by a full scan" if trusted == 0 else f"keeping the first {trusted}",
        )
    start = 0
    if trusted:
        last = indexed[trusted - 1]
        start = last + HEADER_SIZE + header_problem(read(last, HEADER_SIZE), 0)[0]
    found = scan(read, start, size)
    if found.problem is not None:
        bad = trusted + len(found.offsets)
        later = find_valid_record(read, found.end + 1, size)
        if later is not None and not cut_corrupt_tail:
            raise CorruptStoreError(
                f"{log_path}: entry {bad} at {found.problem}, but a valid "
                f"record follows at offset {later}: damage inside the log, not a torn tail; "
                "refusing to cut it (open with cut_corrupt_tail=True to discard it and "
                "everything after it)"
            )
        logger.warning(
            "%s: cut %d bytes of torn tail at entry %d (%s)",
            log_path,
            size - found.end,
            bad,
            found.problem,
        )
        os.ftruncate(log_fd, found.end)
        os.fsync(log_fd)
    if found.offsets:
        logger.info(
            "%s: indexed %d records found past the index", log_path.parent, len(found.offsets)
        )
    if trusted != len(indexed) or found.offsets or idx_size != trusted * INDEX_ITEM:
        os.ftruncate(idx_fd, trusted * INDEX_ITEM)
        pwrite_all(idx_fd, index_to_bytes(found.offsets), trusted * INDEX_ITEM)
        os.fsync(idx_fd)
    offsets = indexed[:trusted]
    offsets.extend(found.offsets)
    return offsets, found.end


def trusted_prefix(read: Reader, indexed: array[int], size: int) -> int:
    """How many leading index items to trust: of the strictly increasing prefix (a cheap
    in-memory pass), up to the newest item that points at a valid record inside the log,
    directly after its (also valid) predecessor; at most :data:`WALK_BACK` items are examined
    before it gives up (0: a full scan rebuilds the index)."""
    increasing = len(indexed)
    if not all(map(operator.lt, indexed, indexed[1:])):
        increasing = next(k + 1 for k in range(len(indexed)) if indexed[k] >= indexed[k + 1])
    newest = bisect.bisect_left(indexed, size, hi=increasing)
    for k in range(newest - 1, max(newest - 1 - WALK_BACK, -1), -1):
        if _item_holds(read, indexed, k, size):
            return k + 1
    return 0


def _item_holds(read: Reader, indexed: array[int], k: int, size: int) -> bool:
    offset = indexed[k]
    if offset >= size or (k == 0 and offset != 0) or (k > 0 and indexed[k - 1] >= offset):
        return False
    if not _record_at(read, offset):
        return False
    if k == 0:
        return True
    prev = indexed[k - 1]
    length = header_problem(read(prev, HEADER_SIZE), 0)[0]
    return prev + HEADER_SIZE + length == offset and _record_at(read, prev)


def _record_at(read: Reader, offset: int) -> bool:
    length, problem = header_problem(read(offset, HEADER_SIZE), 0)
    if problem is not None:
        return False
    return record_problem(read(offset, HEADER_SIZE + length), 0) is None


def scan_all(read: Reader, end: int, *, log_path: Path) -> array[int]:
    """The offset of every record in the log's first ``end`` bytes, each checked (framing and
    CRC). Raises CorruptStoreError naming the first bad entry."""
    found = scan(read, 0, end)
    if found.problem is not None:
        raise CorruptStoreError(f"{log_path}: entry {len(found.offsets)} at {found.problem}")
    return found.offsets


def check_index(logged: array[int], indexed: array[int], *, idx_path: Path) -> None:
    """Check that the index items ``indexed`` are the offsets ``logged`` a full scan found.
    Raises CorruptStoreError naming the first entry where they differ."""
    for index, (at, item) in enumerate(zip(logged, indexed, strict=False)):
        if at != item:
            raise CorruptStoreError(
                f"{idx_path}: entry {index}: expected offset "
                f"{at} (from the log), found {item}; rebuild_index() repairs it"
            )
    if len(logged) != len(indexed):
        raise CorruptStoreError(
            f"{idx_path}: expected {len(logged)} entries (from the log), found {len(indexed)}"
        )


def scanned_payloads(
    read: Reader, begin: int, end: int, *, first: int, count: int, log_path: Path
) -> list[bytes]:
    """The payloads of the ``count`` records a walk of the log from offset ``begin`` (entry
    ``first``'s record, by the index) to ``end`` finds. Raises DamagedEntryError at the first
    damaged record, or where the log ends early; OSError when the log cannot be read."""
    found = scan(read, begin, end)
    if len(found.offsets) < count:
        where = found.problem or f"the log ends after {len(found.offsets)} records"
        raise DamagedEntryError(
            first + len(found.offsets), f"its record in {log_path} is damaged ({where})"
        )
    payloads = []
    for offset in found.offsets[:count]:
        length = header_problem(read(offset, HEADER_SIZE), 0)[0]
        payloads.append(read(offset + HEADER_SIZE, length))
    return payloads
