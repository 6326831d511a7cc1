"""The embedded entry store: the append-only log of one data directory (DESIGN 5).

Files in the data directory::

    LOCK         flock'ed exclusively by the one process that has the store open
    entries.log  the records, one per entry, in entry order (format in :mod:`ledger.store.records`:
                 b"PHTE" | payload length uint32 LE | CRC-32 of payload uint32 LE | payload)
    entries.idx  derived: uint64 LE byte offset of each entry's record; rebuildable from the log

The payload of entry ``i`` is that entry's canonical bytes; the store never parses it.

Durability invariant: ``append_batch`` writes the whole batch with one write and returns only
after one ``fdatasync`` of the log has returned, so an append is acknowledged only once its record
is on disk. A crash can therefore leave only a torn tail of records that were never acknowledged,
and the next ``open`` cuts it (logging how many bytes). The index is written after the log and not
synced per batch: it may lag the log (the next open scans forward from its last good item) or
run past it (the next open walks back to the last item that still points at a valid record); it
is synced by ``sync_index``, which the caller runs before writing a snapshot, and by ``close``.

Recovery is fast because it trusts the index: ``open`` checks only that the last plausible index
item points at a valid record that follows its predecessor, then scans the log from there. Damage
in the middle of the log is therefore not noticed by ``open``; ``verify_records`` walks every
record and raises CorruptStoreError naming the first bad entry. When a scan at open does hit a bad
record that is followed by a valid one, that is damage, not a torn tail: ``open`` refuses to cut
acknowledged data and raises CorruptStoreError (``cut_corrupt_tail=True`` is the operator's
explicit override). Power loss on file systems that persist a batch's pages out of order could, in
principle, leave such a pattern inside the last unacknowledged batch; the override covers it.

Digest: once ``start_digest`` has hashed the log (the ledger does so on open, checking the
records a snapshot covers against the digest the snapshot recorded), the store keeps the SHA-256
of the whole log up to date as it appends, from the very bytes it writes; ``digest`` gives it for a
snapshot to record. Reads raise DamagedEntryError naming the entry whose record is damaged.

Concurrency: one writer process (the LOCK); within it the store is thread-safe. Appends,
truncation and maintenance are serialized by a write lock; readers and the publication of newly
synced entries share a short state lock, so readers never wait for an fsync.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import logging
import operator
import os
import threading
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ledger.errors import CorruptStoreError, DamagedEntryError, StoreError
from ledger.store.durable import datasync, fsync_dir, pread_all, pwrite_all, write_atomic
from ledger.store.records import (
    HEADER_SIZE,
    INDEX_ITEM,
    SCAN_CHUNK,
    RecordError,
    decode_framed,
    decode_span,
    encode_record,
    find_valid_record,
    header_problem,
    index_from_bytes,
    index_to_bytes,
    new_index,
    record_problem,
    scan,
)

__all__ = ["INDEX_NAME", "LOCK_NAME", "LOG_NAME", "EntryStore", "fsync_dir", "write_atomic"]

logger = logging.getLogger(__name__)

LOG_NAME = "entries.log"
INDEX_NAME = "entries.idx"
LOCK_NAME = "LOCK"
WALK_BACK = 4096  # index items examined, newest first, before open falls back to a full scan


def _open_rw(path: Path) -> tuple[int, bool]:
    existed = path.exists()
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), not existed


class EntryStore:
    """The append-only entry log of one data directory. Create with :meth:`open`."""

    def __init__(self, *, data_dir: Path, lock_fd: int, log_fd: int, idx_fd: int) -> None:
        self._data_dir = data_dir
        self._lock_fd = lock_fd
        self._log_fd = log_fd
        self._idx_fd = idx_fd
        self._offsets = new_index()
        self._end = 0
        self._closed = False
        self._failed: str | None = None
        self._digest: Any = None  # hashlib sha256 of the whole log, once start_digest ran
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()

    # -- opening and recovery ---------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, *, cut_corrupt_tail: bool = False) -> EntryStore:
        """Open (creating if missing) the store in ``data_dir`` and recover it.

        Raises StoreError if another process holds the directory or it cannot be read or
        written, CorruptStoreError if a bad record is followed by valid ones (see module doc).
        """
        fds: list[int] = []
        try:
            if not data_dir.is_dir():
                data_dir.mkdir(parents=True)
                fsync_dir(data_dir.parent)
            lock_fd, _ = _open_rw(data_dir / LOCK_NAME)
            fds.append(lock_fd)
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError(
                    f"{data_dir}: already open (LOCK held by another process)"
                ) from exc
            log_fd, log_created = _open_rw(data_dir / LOG_NAME)
            fds.append(log_fd)
            idx_fd, idx_created = _open_rw(data_dir / INDEX_NAME)
            fds.append(idx_fd)
            if log_created or idx_created:
                fsync_dir(data_dir)
            store = cls(data_dir=data_dir, lock_fd=lock_fd, log_fd=log_fd, idx_fd=idx_fd)
            store._recover(cut_corrupt_tail=cut_corrupt_tail)
            return store
        except BaseException as exc:
            for fd in reversed(fds):
                os.close(fd)
            if isinstance(exc, OSError):
                raise StoreError(f"{data_dir}: cannot open the entry store: {exc}") from exc
            raise

    def _read(self, offset: int, size: int) -> bytes:
        return pread_all(self._log_fd, size, offset)

    def _recover(self, *, cut_corrupt_tail: bool) -> None:
        size = os.fstat(self._log_fd).st_size
        idx_size = os.fstat(self._idx_fd).st_size
        indexed = index_from_bytes(pread_all(self._idx_fd, idx_size, 0))
        trusted = self._trusted_prefix(indexed, size)
        if trusted < len(indexed):
            logger.warning(
                "%s: %d of %d index items do not match the log; %s",
                self._data_dir / INDEX_NAME,
                len(indexed) - trusted,
                len(indexed),
                "rebuilding it by a full scan" if trusted == 0 else f"keeping the first {trusted}",
            )
        start = 0
        if trusted:
            last = indexed[trusted - 1]
            start = last + HEADER_SIZE + header_problem(self._read(last, HEADER_SIZE), 0)[0]
        found = scan(self._read, start, size)
        if found.problem is not None:
            bad = trusted + len(found.offsets)
            later = find_valid_record(self._read, found.end + 1, size)
            if later is not None and not cut_corrupt_tail:
                raise CorruptStoreError(
                    f"{self._data_dir / LOG_NAME}: entry {bad} at {found.problem}, but a valid "
                    f"record follows at offset {later}: damage inside the log, not a torn tail; "
                    "refusing to cut it (open with cut_corrupt_tail=True to discard it and "
                    "everything after it)"
                )
            logger.warning(
                "%s: cut %d bytes of torn tail at entry %d (%s)",
                self._data_dir / LOG_NAME,
                size - found.end,
                bad,
                found.problem,
            )
            os.ftruncate(self._log_fd, found.end)
            os.fsync(self._log_fd)
        if found.offsets:
            logger.info(
                "%s: indexed %d records found past the index", self._data_dir, len(found.offsets)
            )
        if trusted != len(indexed) or found.offsets or idx_size != trusted * INDEX_ITEM:
            os.ftruncate(self._idx_fd, trusted * INDEX_ITEM)
            pwrite_all(self._idx_fd, index_to_bytes(found.offsets), trusted * INDEX_ITEM)
            os.fsync(self._idx_fd)
        self._offsets = indexed[:trusted]
        self._offsets.extend(found.offsets)
        self._end = found.end

    def _trusted_prefix(self, indexed: array[int], size: int) -> int:
        """How many leading index items to trust: of the strictly increasing prefix (a cheap
        in-memory pass), up to the newest item that points at a valid record inside the log,
        directly after its (also valid) predecessor."""
        increasing = len(indexed)
        if not all(map(operator.lt, indexed, indexed[1:])):
            increasing = next(k + 1 for k in range(len(indexed)) if indexed[k] >= indexed[k + 1])
        newest = bisect.bisect_left(indexed, size, hi=increasing)
        for k in range(newest - 1, max(newest - 1 - WALK_BACK, -1), -1):
            if self._item_holds(indexed, k, size):
                return k + 1
        return 0

    def _item_holds(self, indexed: array[int], k: int, size: int) -> bool:
        offset = indexed[k]
        if offset >= size or (k == 0 and offset != 0) or (k > 0 and indexed[k - 1] >= offset):
            return False
        if not self._record_at(offset):
            return False
        if k == 0:
            return True
        prev = indexed[k - 1]
        length = header_problem(self._read(prev, HEADER_SIZE), 0)[0]
        return prev + HEADER_SIZE + length == offset and self._record_at(prev)

    def _record_at(self, offset: int) -> bool:
        length, problem = header_problem(self._read(offset, HEADER_SIZE), 0)
        if problem is not None:
            return False
        return record_problem(self._read(offset, HEADER_SIZE + length), 0) is None

    # -- reading ----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def count(self) -> int:
        """The number of durable entries."""
        with self._state_lock:
            return len(self._offsets)

    def read(self, index: int) -> bytes:
        """The payload of entry ``index``. Raises StoreError if out of range, CorruptStoreError
        if its record is damaged."""
        return self.read_range(index, index + 1)[0]

    def read_range(self, start: int, stop: int, *, checksums: bool = True) -> list[bytes]:
        """The payloads of entries ``start`` to ``stop - 1``, read with one pread. Without
        ``checksums`` the records' CRCs are not checked (their framing still is): only for a
        caller that checks every payload against a stronger hash itself."""
        with self._state_lock:
            self._check_open()
            count = len(self._offsets)
            if not 0 <= start <= stop <= count:
                raise StoreError(
                    f"entries {start}..{stop}: expected 0 <= start <= stop <= {count}"
                    if stop != start + 1
                    else f"entry {start}: out of range, the store holds {count} entries"
                )
            if start == stop:
                return []
            base = self._offsets[start]
            end = self._offsets[stop] if stop < count else self._end
            try:
                buf = self._read(base, end - base)
            except OSError as exc:
                raise StoreError(f"{self._data_dir / LOG_NAME}: cannot read: {exc}") from exc
            relative = [offset - base for offset in self._offsets[start:stop]]
        try:
            if not checksums:
                return decode_framed(buf, relative, start)
            return decode_span(buf, relative, start)
        except RecordError as exc:
            raise DamagedEntryError(
                exc.index, f"its record in {self._data_dir / LOG_NAME} is damaged ({exc.problem})"
            ) from exc

    def offset(self, index: int) -> int:
        """Where entry ``index``'s record starts in the log (the log's length for ``count``)."""
        with self._state_lock:
            count = len(self._offsets)
            if not 0 <= index <= count:
                raise StoreError(f"entry {index}: out of range, the store holds {count} entries")
            return self._offsets[index] if index < count else self._end

    def read_range_scanned(self, start: int, stop: int) -> list[bytes]:
        """The payloads of entries ``start`` to ``stop - 1`` as a walk of the log's records from
        entry ``start`` finds them, trusting the index only for where ``start`` begins: to say
        what a record holds when the index and the log disagree (records swapped, inserted or
        cut). Slow (it checks every record to the end of the log); for naming damage only.
        Raises DamagedEntryError at the first damaged record, or where the log ends early."""
        with self._state_lock:
            self._check_open()
            count = len(self._offsets)
            if not 0 <= start <= stop <= count:
                raise StoreError(f"entries {start}..{stop}: expected 0 <= start <= stop <= {count}")
            begin = self._offsets[start] if start < count else self._end
            end = self._end
        try:
            found = scan(self._read, begin, end)
            if len(found.offsets) < stop - start:
                where = found.problem or f"the log ends after {len(found.offsets)} records"
                raise DamagedEntryError(
                    start + len(found.offsets),
                    f"its record in {self._data_dir / LOG_NAME} is damaged ({where})",
                )
            payloads = []
            for offset in found.offsets[: stop - start]:
                length = header_problem(self._read(offset, HEADER_SIZE), 0)[0]
                payloads.append(self._read(offset + HEADER_SIZE, length))
            return payloads
        except OSError as exc:
            raise StoreError(f"{self._data_dir / LOG_NAME}: cannot read: {exc}") from exc

    def iter_from(
        self, start: int, stop: int | None = None, *, batch: int = 1024
    ) -> Iterator[bytes]:
        """Iterate payloads from ``start`` to ``stop`` (default: the count now), ``batch`` per
        read. Raises StoreError at once if the range is out of bounds."""
        count = self.count
        stop = count if stop is None else stop
        if not 0 <= start <= stop <= count:
            raise StoreError(f"entries {start}..{stop}: expected 0 <= start <= stop <= {count}")
        if batch < 1:
            raise StoreError(f"iter_from batch: expected >= 1, found {batch}")
        return self._iterate(start, stop, batch)

    def _iterate(self, start: int, stop: int, batch: int) -> Iterator[bytes]:
        for first in range(start, stop, batch):
            yield from self.read_range(first, min(first + batch, stop))

    # -- the digest of the log --------------------------------------------------------------

    def start_digest(self, at: int) -> str:
        """Hash the whole log once (one sequential read); return the SHA-256 (hex) of its bytes
        before entry ``at``'s record. From then on the store keeps the digest of the whole log
        up to date as it appends (see :meth:`digest`)."""
        with self._write_lock:
            self._check_open()
            split, end = self.offset(at), self._end
            digest = hashlib.sha256()
            prefix = ""
            position = 0
            try:
                while True:
                    if position == split:
                        prefix = digest.hexdigest()
                    if position == end:
                        break
                    limit = split if position < split else end
                    chunk = self._read(position, min(SCAN_CHUNK, limit - position))
                    if not chunk:
                        raise StoreError(f"{self._data_dir / LOG_NAME}: shorter than {end} bytes")
                    digest.update(chunk)
                    position += len(chunk)
            except OSError as exc:
                raise StoreError(f"{self._data_dir / LOG_NAME}: cannot read: {exc}") from exc
            with self._state_lock:
                self._digest = digest
            return prefix

    def digest(self) -> tuple[int, str]:
        """(length of the log in bytes, SHA-256 of those bytes as hex), kept by the appends since
        :meth:`start_digest`. Raises StoreError before it ran."""
        with self._state_lock:
            if self._digest is None:
                raise StoreError(f"{self._data_dir / LOG_NAME}: the log digest was not started")
            return self._end, self._digest.hexdigest()

    # -- writing ----------------------------------------------------------------------------

    def append_batch(self, payloads: Sequence[bytes]) -> None:
        """Append ``payloads`` as the next entries: one write, one fdatasync of the log, then the
        index items. The entries are durable (and may be acknowledged) once this returns.

        Raises StoreError for an empty or oversized payload (nothing written) or an I/O failure
        (the store then refuses further appends until reopened: after a failed fsync the state of
        the file is unknown, and the next open's recovery decides it).
        """
        if not payloads:
            return
        try:
            records = [encode_record(payload) for payload in payloads]
        except ValueError as exc:
            raise StoreError(f"append_batch: {exc}") from exc
        with self._write_lock:
            self._check_open()
            if self._failed is not None:
                raise StoreError(f"append_batch: refused after an earlier failure: {self._failed}")
            start = self._end
            offsets = new_index()
            position = start
            for record in records:
                offsets.append(position)
                position += len(record)
            written = b"".join(records)
            try:
                pwrite_all(self._log_fd, written, start)
                datasync(self._log_fd)
            except OSError as exc:
                self._failed = f"writing {len(records)} records at offset {start}: {exc}"
                raise StoreError(f"{self._data_dir / LOG_NAME}: {self._failed}") from exc
            first = len(self._offsets)
            try:
                pwrite_all(self._idx_fd, index_to_bytes(offsets), first * INDEX_ITEM)
            except OSError as exc:
                # The entries are durable; only the derived index is behind. Reopening rebuilds it.
                self._failed = f"writing index items from entry {first}: {exc}"
                logger.error("%s: %s", self._data_dir / INDEX_NAME, self._failed)
            with self._state_lock:
                self._offsets.extend(offsets)
                self._end = position
                if self._digest is not None:
                    self._digest.update(written)

    def sync_index(self) -> None:
        """Make the index durable (run before writing a snapshot that relies on it)."""
        with self._write_lock:
            self._check_open()
            if self._failed is not None:
                raise StoreError(f"sync_index: refused after an earlier failure: {self._failed}")
            try:
                os.fsync(self._idx_fd)
            except OSError as exc:
                raise StoreError(f"{self._data_dir / INDEX_NAME}: cannot sync: {exc}") from exc

    def truncate(self, count: int) -> None:
        """Drop every entry from ``count`` on (recovery and tests only)."""
        with self._write_lock, self._state_lock:
            self._check_open()
            if not 0 <= count <= len(self._offsets):
                raise StoreError(f"truncate: expected 0..{len(self._offsets)}, found {count}")
            end = self._offsets[count] if count < len(self._offsets) else self._end
            try:
                # Log first: an index left longer than the log is walked back at open, whereas
                # a log left longer than the index would be scanned and the entries restored.
                os.ftruncate(self._log_fd, end)
                os.fsync(self._log_fd)
                os.ftruncate(self._idx_fd, count * INDEX_ITEM)
                os.fsync(self._idx_fd)
            except OSError as exc:
                raise StoreError(f"{self._data_dir}: cannot truncate: {exc}") from exc
            del self._offsets[count:]
            self._end = end
            self._digest = None  # start_digest hashes the shorter log again

    # -- maintenance ------------------------------------------------------------------------

    def verify_records(self) -> int:
        """Walk every record, checking framing and CRC and that the index agrees. Returns the
        number of entries checked; raises CorruptStoreError naming the first bad entry."""
        with self._write_lock:
            with self._state_lock:
                self._check_open()
                offsets = array(self._offsets.typecode, self._offsets)
                end = self._end
            found = scan(self._read, 0, end)
            if found.problem is not None:
                raise CorruptStoreError(
                    f"{self._data_dir / LOG_NAME}: entry {len(found.offsets)} at {found.problem}"
                )
            for index, (logged, indexed) in enumerate(zip(found.offsets, offsets, strict=False)):
                if logged != indexed:
                    raise CorruptStoreError(
                        f"{self._data_dir / INDEX_NAME}: entry {index}: expected offset "
                        f"{logged} (from the log), found {indexed}; rebuild_index() repairs it"
                    )
            if len(found.offsets) != len(offsets):
                raise CorruptStoreError(
                    f"{self._data_dir / INDEX_NAME}: expected {len(found.offsets)} entries "
                    f"(from the log), found {len(offsets)}"
                )
            return len(offsets)

    def rebuild_index(self) -> int:
        """Re-derive the index from a full scan of the log; returns the entry count. Raises
        CorruptStoreError (changing nothing) if any record is damaged."""
        with self._write_lock:  # keeps appends and close out; readers go on during the scan
            with self._state_lock:
                self._check_open()
                end = self._end
            found = scan(self._read, 0, end)
            if found.problem is not None:
                raise CorruptStoreError(
                    f"{self._data_dir / LOG_NAME}: entry {len(found.offsets)} at {found.problem}"
                )
            try:
                os.ftruncate(self._idx_fd, 0)
                pwrite_all(self._idx_fd, index_to_bytes(found.offsets), 0)
                os.fsync(self._idx_fd)
            except OSError as exc:
                raise StoreError(f"{self._data_dir / INDEX_NAME}: cannot rewrite: {exc}") from exc
            with self._state_lock:
                self._offsets = found.offsets
            return len(found.offsets)

    # -- closing ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._data_dir}: the entry store is closed")

    def close(self) -> None:
        """Sync the index, close the files and release the LOCK. Idempotent."""
        with self._write_lock, self._state_lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._failed is None:
                    os.fsync(self._idx_fd)
            except OSError as exc:
                raise StoreError(f"{self._data_dir / INDEX_NAME}: cannot sync: {exc}") from exc
            finally:
                for fd in (self._log_fd, self._idx_fd, self._lock_fd):
                    os.close(fd)

    def __enter__(self) -> EntryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._offsets)} entries"
        return f"EntryStore({str(self._data_dir)!r}, {state})"
