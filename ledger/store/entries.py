"""The embedded entry store: the append-only log of one data directory and its index (DESIGN 5).

Invariants: an append is acknowledged only once its records are on disk; the index is derived
(rebuildable from the log) and may lag or run past it until synced; one process holds the directory
(the LOCK), and within it the store is thread-safe. Recovery at open and the full scans are
:mod:`ledger.store.logscan`; the record format is :mod:`ledger.store.records`.
"""

from __future__ import annotations

import logging
import os
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from ledger.errors import DamagedEntryError, StoreError
from ledger.store.durable import datasync, fsync_dir, pread_all, pwrite_all, write_atomic
from ledger.store.logdigest import LogDigest
from ledger.store.logfiles import (
    CHECKPOINT_NAME,
    INDEX_NAME,
    LOCK_NAME,
    LOG_NAME,
    cannot_open,
    close_all,
    open_files,
)
from ledger.store.logscan import check_index, recover, scan_all, scanned_payloads
from ledger.store.records import (
    INDEX_ITEM,
    RecordError,
    decode_framed,
    decode_span,
    encode_record,
    index_to_bytes,
    new_index,
)

__all__ = ["INDEX_NAME", "LOCK_NAME", "LOG_NAME", "EntryStore", "fsync_dir", "write_atomic"]

logger = logging.getLogger(__name__)


class EntryStore:
    """The append-only entry log of one data directory. Create with :meth:`open`.

    Its files are LOCK, entries.log and entries.idx (:func:`ledger.store.logfiles.open_files`).
    The payload of entry ``i`` is that entry's canonical bytes; the store never parses it.

    Durability: ``append_batch`` writes the whole batch with one write and returns only after one
    ``fdatasync`` of the log has returned, so an append is acknowledged only once its record is
    on disk. A crash can therefore leave only a torn tail of records that were never
    acknowledged, and the next ``open`` cuts it (:func:`ledger.store.logscan.recover`). The index
    is written after the log and not synced per batch: it may lag the log (the next open scans
    forward from its last good item) or run past it (the next open walks back to the last item
    that still points at a valid record); it is synced by ``sync_index``, which the caller runs
    before writing a snapshot, and by ``close``. Damage in the middle of the log is not noticed
    by ``open``; ``verify_records`` walks every record and names the first bad entry.

    Digest: once ``start_digest`` has hashed the log (the ledger does so on open, checking the
    records a snapshot covers against the digest the snapshot recorded), the store keeps the
    SHA-256 of the whole log up to date as it appends (:class:`ledger.store.logdigest.LogDigest`);
    ``digest`` gives it for a snapshot to record. Reads raise DamagedEntryError naming the entry
    whose record is damaged.

    Concurrency: one writer process (the LOCK); within it the store is thread-safe. Appends,
    truncation and maintenance are serialized by a write lock; readers and the publication of
    newly synced entries share a short state lock, so readers never wait for an fsync.
    """

    def __init__(self, *, data_dir: Path, lock_fd: int, log_fd: int, idx_fd: int) -> None:
        self._data_dir = data_dir
        self._lock_fd = lock_fd
        self._log_fd = log_fd
        self._idx_fd = idx_fd
        self._offsets = new_index()
        self._end = 0
        self._closed = False
        self._failed: str | None = None
        self._digest: LogDigest | None = None  # of the whole log, once start_digest ran
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()

    # -- opening and recovery ---------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, *, cut_corrupt_tail: bool = False) -> EntryStore:
        """Open (creating if missing) the store in ``data_dir`` and recover it.

        Raises StoreError if another process holds the directory or it cannot be read or
        written, CorruptStoreError if a bad record is followed by valid ones
        (:func:`ledger.store.logscan.recover`).
        """
        lock_fd, log_fd, idx_fd = open_files(data_dir)
        try:
            store = cls(data_dir=data_dir, lock_fd=lock_fd, log_fd=log_fd, idx_fd=idx_fd)
            store._recover(cut_corrupt_tail=cut_corrupt_tail)
            return store
        except BaseException as exc:
            close_all([lock_fd, log_fd, idx_fd])
            if isinstance(exc, OSError):
                raise cannot_open(data_dir, exc) from exc
            raise

    def _read(self, offset: int, size: int) -> bytes:
        return pread_all(self._log_fd, size, offset)

    def _recover(self, *, cut_corrupt_tail: bool) -> None:
        self._offsets, self._end = recover(
            self._read,
            log_fd=self._log_fd,
            idx_fd=self._idx_fd,
            log_path=self._data_dir / LOG_NAME,
            idx_path=self._data_dir / INDEX_NAME,
            cut_corrupt_tail=cut_corrupt_tail,
        )

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
            return scanned_payloads(
                self._read,
                begin,
                end,
                first=start,
                count=stop - start,
                log_path=self._data_dir / LOG_NAME,
            )
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
            prefix, digest = LogDigest.of_log(
                self._read, split, end, log_path=self._data_dir / LOG_NAME
            )
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

    def append_sequenced(self, decide: Callable[[Sequence[bytes]], list[bytes]]) -> None:
        """``append_batch(decide([]))``: one process writes a data directory (its LOCK)."""
        payloads = decide(())
        if payloads:
            self.append_batch(payloads)

    def catch_up(self, adopt: Callable[[Sequence[bytes], bytes | None], None]) -> None:
        """Nothing to hand over: no other process appends to this directory."""

    def watch(self, wake: Callable[[], None], elected: Callable[[], None]) -> None:
        """Nothing to watch: no other process appends to this directory."""

    def campaign(self) -> None:
        """Nothing to campaign for: the one process writing the directory integrates."""

    def integrating(self) -> bool:
        return True

    @property
    def shared(self) -> bool:
        return False

    def publish(self, note: bytes, written: Callable[[bytes], None]) -> None:
        """Not called: nobody to publish to (the snapshot saves the checkpoint)."""
        raise StoreError("the embedded store is not shared; its ledger serves what it signs")

    def save_checkpoint(self, note: bytes) -> None:
        """Replace ``checkpoint`` in the data directory with ``note`` (atomically)."""
        write_atomic(self._data_dir / CHECKPOINT_NAME, note)

    def stored_checkpoint(self) -> bytes | None:
        path = self._data_dir / CHECKPOINT_NAME
        return path.read_bytes() if path.exists() else None

    @property
    def checkpoint_place(self) -> str:
        return str(self._data_dir / CHECKPOINT_NAME)

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
            logged = scan_all(self._read, end, log_path=self._data_dir / LOG_NAME)
            check_index(logged, offsets, idx_path=self._data_dir / INDEX_NAME)
            return len(offsets)

    def rebuild_index(self) -> int:
        """Re-derive the index from a full scan of the log; returns the entry count. Raises
        CorruptStoreError (changing nothing) if any record is damaged."""
        with self._write_lock:  # keeps appends and close out; readers go on during the scan
            with self._state_lock:
                self._check_open()
                end = self._end
            offsets = scan_all(self._read, end, log_path=self._data_dir / LOG_NAME)
            try:
                os.ftruncate(self._idx_fd, 0)
                pwrite_all(self._idx_fd, index_to_bytes(offsets), 0)
                os.fsync(self._idx_fd)
            except OSError as exc:
                raise StoreError(f"{self._data_dir / INDEX_NAME}: cannot rewrite: {exc}") from exc
            with self._state_lock:
                self._offsets = offsets
            return len(offsets)

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
