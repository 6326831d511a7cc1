"""``PostgresStore``: the :class:`ledger.store.Store` over a PostgreSQL database.

Invariants:

- An append is one transaction that locks the coordination row (``pht_log``, SELECT ... FOR
  UPDATE), inserts the entries at the next dense indexes and advances the row; ``append_batch``
  returns only once it has committed, so an acknowledged entry is a committed one.
- One writer: the store holds the schema's writer advisory lock for as long as it is open, and
  refuses to open when another process holds it. An append also finds the row at the size it
  knows, or refuses (someone else wrote behind its back).
- Each entry keeps the SHA-256 of its payload, so ``read_range`` names an entry whose stored bytes
  changed (:class:`DamagedEntryError`).
- After a failed append the store re-reads its size from the database (the commit may or may not
  have happened), so the ledger's reload recovers exactly what is committed.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

from ledger.errors import DamagedEntryError, StoreError
from ledger.store.postgres.frames import LogDigest, framed_size, starts
from ledger.store.postgres.schema import (
    LOCK_WAIT,
    WRITER_LOCK,
    WRITER_LOCK_WAIT,
    Connection,
    Session,
    connect,
    create_tables,
    database_error,
    has_ledger,
    shown,
)

READ_CHUNK = 1024


class PostgresStore:
    """The entries of one ledger in the database ``dsn`` (its ``search_path`` schema)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._digest: LogDigest | None = None
        self._closed = False
        self._stale = True
        self._count = 0
        self._bytes = 0
        self._locked_before = False
        self._write = Session(dsn, on_connect=self._take_writer_lock)
        try:
            self._read = Session(dsn)
            self._refresh()
        except BaseException:
            self._write.close()
            raise

    @classmethod
    def open(cls, dsn: str, *, create: bool = False) -> PostgresStore:
        """Open the ledger in ``dsn`` (``create``: a new, empty one). Raises StoreError when it
        holds none (or, with ``create``, already holds one), or another process writes it."""
        probe = connect(dsn)
        try:
            exists = has_ledger(probe)
            if create and exists:
                raise StoreError(f"{shown(dsn)} already holds a ledger; refusing to overwrite it")
            if not create and not exists:
                raise StoreError(f"{shown(dsn)} holds no ledger (run `pht init --store` first)")
            if create:
                create_tables(probe)
        except database_error() as exc:
            raise StoreError(f"{shown(dsn)}: {exc}") from exc
        finally:
            probe.close()
        return cls(dsn)

    def _take_writer_lock(self, conn: Connection) -> None:
        """Run on every (re)connection of the write session: after the database went away the
        lock went with the session, and someone else may have written meanwhile."""
        try:
            if self._locked_before:  # ours until the outage: wait for the old session to end
                conn.execute(LOCK_WAIT)
                locked = (conn.execute(WRITER_LOCK_WAIT).fetchone() is not None,)
                conn.execute("RESET lock_timeout")
            else:
                locked = conn.execute(WRITER_LOCK).fetchone()
        except database_error() as exc:
            raise StoreError(f"{shown(self.dsn)}: cannot take the writer lock back: {exc}") from exc
        if not locked or not locked[0]:
            raise StoreError(
                f"another registry process is writing the ledger in {shown(self.dsn)}; "
                "stop it first (one writer per ledger)"
            )
        self._stale = True
        self._locked_before = True

    # ---- size

    def _refresh(self) -> None:
        row = self._query_one("SELECT size, bytes FROM pht_log")
        self._count, self._bytes = int(row[0]), int(row[1])
        self._stale = False

    @property
    def count(self) -> int:
        if self._stale:
            self._refresh()
        return self._count

    # ---- writing

    def append_batch(self, payloads: Sequence[bytes]) -> None:
        if self._closed:
            raise StoreError("the PostgreSQL store is closed")
        if not payloads:
            return
        with self._write_lock:
            if self._stale:
                self._refresh()
            offsets = starts(self._bytes, payloads)
            end = offsets[-1] + framed_size(payloads[-1])
            first = self._count
            try:
                conn = self._write.get()
                with conn.transaction(), conn.cursor() as cur:
                    row = cur.execute("SELECT size, bytes FROM pht_log FOR UPDATE").fetchone()
                    if row is None or (int(row[0]), int(row[1])) != (first, self._bytes):
                        raise StoreError(
                            f"the ledger in {shown(self.dsn)} holds {row and row[0]} entries, "
                            f"not the {first} this registry wrote: another process wrote to it"
                        )
                    cur.executemany(
                        "INSERT INTO pht_entries (idx, start, payload, sha256) "
                        "VALUES (%s, %s, %s, %s)",
                        [
                            (first + n, offsets[n], payload, hashlib.sha256(payload).digest())
                            for n, payload in enumerate(payloads)
                        ],
                    )
                    cur.execute(
                        "UPDATE pht_log SET size = %s, bytes = %s",
                        (first + len(payloads), end),
                    )
            except database_error() as exc:
                self._stale = True
                raise StoreError(f"{shown(self.dsn)}: the append failed: {exc}") from exc
            except BaseException:
                self._stale = True
                raise
            self._count, self._bytes = first + len(payloads), end
            if self._digest is not None:
                self._digest.update(payloads)

    # ---- reading

    def _query_one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...]:
        rows = self._query(sql, params)
        if not rows:
            raise StoreError(f"{shown(self.dsn)}: no row for {sql!r}")
        return rows[0]

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if self._closed:
            raise StoreError("the PostgreSQL store is closed")
        with self._read_lock:
            try:
                return list(self._read.get().execute(sql, params).fetchall())
            except database_error() as exc:
                raise StoreError(f"{shown(self.dsn)}: {exc}") from exc

    def read(self, index: int) -> bytes:
        return self.read_range(index, index + 1)[0]

    def read_range(self, start: int, stop: int, *, checksums: bool = True) -> list[bytes]:
        count = self.count
        if not 0 <= start <= stop <= count:
            raise StoreError(f"entries {start}..{stop - 1} are out of range (the log has {count})")
        out: list[bytes] = []
        for first in range(start, stop, READ_CHUNK):
            last = min(stop, first + READ_CHUNK)
            rows = self._query(
                "SELECT idx, payload, sha256 FROM pht_entries "
                "WHERE idx >= %s AND idx < %s ORDER BY idx",
                (first, last),
            )
            for expected, row in enumerate(rows, first):
                index, payload, sha = int(row[0]), bytes(row[1]), bytes(row[2])
                if index != expected:
                    raise DamagedEntryError(expected, "its row is missing from pht_entries")
                if checksums and hashlib.sha256(payload).digest() != sha:
                    raise DamagedEntryError(index, "its payload does not match its stored SHA-256")
                out.append(payload)
            if len(rows) != last - first:
                raise DamagedEntryError(first + len(rows), "its row is missing from pht_entries")
        return out

    def read_range_scanned(self, start: int, stop: int) -> list[bytes]:
        """The payloads as stored (there is no index to distrust: each row holds its index)."""
        return self.read_range(start, stop, checksums=False)

    def offset(self, index: int) -> int:
        count = self.count
        if index == count:
            return self._bytes
        if not 0 <= index < count:
            raise StoreError(f"entry {index} is out of range (the log has {count})")
        return int(self._query_one("SELECT start FROM pht_entries WHERE idx = %s", (index,))[0])

    def start_digest(self, at: int) -> str:
        digest = LogDigest()
        for first in range(0, at, READ_CHUNK):
            digest.update(self.read_range(first, min(at, first + READ_CHUNK), checksums=False))
        before = digest.hexdigest()
        digest.update(self.read_range(at, self.count, checksums=False))
        self._digest = digest
        return before

    def digest(self) -> tuple[int, str]:
        if self._digest is None:
            raise StoreError("start_digest was not called")
        return self._digest.length, self._digest.hexdigest()

    def save_checkpoint(self, note: bytes) -> None:
        with self._write_lock:
            try:
                self._write.get().execute("UPDATE pht_log SET checkpoint = %s", (note,))
            except database_error() as exc:
                raise StoreError(f"{shown(self.dsn)}: cannot save the checkpoint: {exc}") from exc

    def stored_checkpoint(self) -> bytes | None:
        note = self._query_one("SELECT checkpoint FROM pht_log")[0]
        return None if note is None else bytes(note)

    @property
    def checkpoint_place(self) -> str:
        return f"the checkpoint in {shown(self.dsn)}"

    def sync_index(self) -> None:
        """Nothing to do: every committed append is durable in the database."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            self._write.close()  # ends the session: the writer lock is released
        with self._read_lock:
            self._read.close()
