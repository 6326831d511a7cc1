"""``PostgresStore``: the :class:`ledger.store.Store` over a PostgreSQL database, shared by any
number of registry processes (replicas) on the same ledger.

Invariants:

- Sequencing is one transaction that locks the coordination row (``pht_log``, SELECT ... FOR
  UPDATE), hands the ledger the entries other processes committed since it last looked (so it
  judges new events against the state as of the entry before them), inserts what the ledger
  decides at the next dense indexes and advances the row. ``append_sequenced`` returns only once
  that has committed: an acknowledged entry is a committed one. A NOTIFY on commit wakes the
  other processes, which read the new entries (``catch_up``; also polled each second).
- ``count`` is the number of entries this process has handed to its ledger; it moves only with
  them, so the ledger never misses an entry. After a write whose outcome is unknown (the
  connection died during COMMIT) it is re-read from the database, and the ledger reloads.
- Each entry keeps the SHA-256 of its payload, so ``read_range`` names an entry whose stored bytes
  changed (:class:`DamagedEntryError`). Connections come back after the database went away.
- The newest ``RECENT`` entries handed to the ledger (written here, or read from the database as
  others wrote them) are kept in memory, ending at ``count``: the long-polls and pages at the
  head, where every follower reads, are answered without a query. Emptied whenever ``count`` is
  read again from the database.
- One process at a time integrates (:mod:`ledger.store.postgres.election`): it signs checkpoints
  and ``publish``es them into ``pht_log``; the others adopt the published one as they catch up.
  Sequencing refuses new entries (:class:`BacklogError`, a 503 to the client) while more than
  ``backlog_limit`` of them wait for a published checkpoint: with no integrator alive, the log
  pushes back instead of queueing without bound.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ledger.errors import BacklogError, DamagedEntryError, StoreError
from ledger.store.postgres.election import Election
from ledger.store.postgres.frames import LogDigest, framed_size, starts
from ledger.store.postgres.publisher import Publisher
from ledger.store.postgres.schema import (
    NOTIFY,
    Session,
    connect,
    create_tables,
    database_error,
    has_ledger,
    save_checkpoint,
    shown,
)
from ledger.store.postgres.watch import Watcher

READ_CHUNK = 1024
RECENT = 4096  # the newest entries kept in memory (see the module)
BACKLOG_LIMIT = 20_000  # sequenced entries awaiting a published checkpoint before appends wait
Decide = Callable[[Sequence[bytes]], list[bytes]]
Adopt = Callable[[Sequence[bytes], bytes | None], None]


class PostgresStore:
    """The entries of one ledger in the database ``dsn`` (its ``search_path`` schema)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._write_lock = threading.Lock()  # sequencing and catching up, one at a time
        self._read_lock = threading.Lock()
        self._digest: LogDigest | None = None
        self._closed = False
        self._stale = True
        self._note: bytes | None = None  # the stored checkpoint as of ``count`` (``_refresh``)
        self._readable = 0  # entries known committed, handed to the ledger or being handed
        self._count = 0
        self._bytes = 0
        self._recent: deque[bytes] = deque(maxlen=RECENT)  # entries count-len..count-1
        self._recent_lock = threading.Lock()  # ``_recent`` with ``_count``
        self._watcher: Watcher | None = None
        self._election: Election | None = None  # a serving ledger's candidacy (campaign)
        self._publisher: Publisher | None = None
        self._published = 0  # the size of the newest published checkpoint handed over
        self.backlog_limit = BACKLOG_LIMIT
        self._write = Session(dsn)
        try:
            self._read = Session(dsn)
            self._refresh()
        except BaseException:
            self._write.close()
            raise

    @classmethod
    def open(cls, dsn: str, *, create: bool = False) -> PostgresStore:
        """Open the ledger in ``dsn`` (``create``: a new, empty one). Raises StoreError when it
        holds none (or, with ``create``, already holds one)."""
        probe = connect(dsn)
        try:
            exists = has_ledger(probe)
            if create and exists:
                raise StoreError(f"{shown(dsn)} already holds a ledger; refusing to overwrite it")
            if not create and not exists:
                raise StoreError(f"{shown(dsn)} holds no ledger (run `pht init --store` first)")
            create_tables(probe)
        except database_error() as exc:
            raise StoreError(f"{shown(dsn)}: {exc}") from exc
        finally:
            probe.close()
        return cls(dsn)

    # ---- size

    def _refresh(self) -> None:
        # The checkpoint with the size, in one statement: the integrator publishes checkpoints
        # over committed entries only, so this one never covers more than ``count`` (one read
        # later could cover entries appended since, which this process has not read).
        row = self._query_one("SELECT size, bytes, checkpoint FROM pht_log")
        with self._recent_lock:
            self._count, self._bytes = int(row[0]), int(row[1])
            self._recent.clear()
        self._note = None if row[2] is None else bytes(row[2])
        self._stale = False

    @property
    def count(self) -> int:
        if self._stale:
            self._refresh()
        return self._count

    def _advance(self, payloads: Sequence[bytes]) -> None:
        with self._recent_lock:
            self._count += len(payloads)
            self._recent.extend(payloads)
        self._bytes += sum(framed_size(p) for p in payloads)
        if self._digest is not None:
            self._digest.update(payloads)

    # ---- writing

    def append_batch(self, payloads: Sequence[bytes]) -> None:
        """Append ``payloads`` as they are; refuses if another process appended meanwhile (a
        copy into a store of its own; the ledger uses :meth:`append_sequenced`)."""

        def decide(newer: Sequence[bytes]) -> list[bytes]:
            if newer:
                raise StoreError(
                    f"the ledger in {shown(self.dsn)} holds {self._count} entries, not the "
                    f"{self._count - len(newer)} this process wrote: another process wrote to it"
                )
            return list(payloads)

        self.append_sequenced(decide)

    def append_sequenced(self, decide: Decide) -> None:
        if self._closed:
            raise StoreError("the PostgreSQL store is closed")
        with self._write_lock:
            if self._stale:
                self._refresh()
            for attempt in (1, 2):
                decided = False
                payloads: list[bytes] = []
                try:
                    conn = self._write.get()
                    with conn.transaction(), conn.cursor() as cur:
                        row = cur.execute(
                            "SELECT size, bytes, checkpoint_size FROM pht_log FOR UPDATE"
                        ).fetchone()
                        self._check_backlog(int(row[0]), row[2])
                        newer = self._rows(cur, self._count, int(row[0]))
                        if self._bytes + sum(map(framed_size, newer)) != int(row[1]):
                            raise StoreError(
                                f"{shown(self.dsn)}: pht_log does not agree with the entries "
                                "before it: the tables were edited by hand"
                            )
                        self._advance(newer)  # committed by others: the ledger takes them now
                        decided = True
                        payloads = decide(newer)
                        if payloads:
                            self._insert(cur, payloads)
                except database_error() as exc:
                    if not decided and attempt == 1 and self._write.broken():
                        continue  # a connection the database dropped: once more, on a new one
                    self._stale = bool(payloads)  # did the COMMIT happen? the ledger reloads
                    raise StoreError(f"{shown(self.dsn)}: the append failed: {exc}") from exc
                except BaseException:
                    self._stale = bool(payloads)
                    raise
                self._advance(payloads)
                return

    def _check_backlog(self, size: int, published: int | None) -> None:
        if self._election is None:
            return  # a copy into a store of its own: nobody integrates meanwhile
        waiting = size - (published or 0)
        if waiting > self.backlog_limit:
            raise BacklogError(
                f"{waiting} entries await a checkpoint (the bound is {self.backlog_limit}): "
                "the integrating registry process is behind or gone; try again shortly"
            )

    def _insert(self, cur: Any, payloads: list[bytes]) -> None:
        first = self._count
        offsets = starts(self._bytes, payloads)
        cur.executemany(
            "INSERT INTO pht_entries (idx, start, payload, sha256) VALUES (%s, %s, %s, %s)",
            [
                (first + n, offsets[n], payload, hashlib.sha256(payload).digest())
                for n, payload in enumerate(payloads)
            ],
        )
        end = offsets[-1] + framed_size(payloads[-1])
        cur.execute("UPDATE pht_log SET size = %s, bytes = %s", (first + len(payloads), end))
        cur.execute(NOTIFY)  # delivered on commit

    def _rows(self, cur: Any, start: int, stop: int) -> list[bytes]:
        if stop <= start:
            return []
        rows = cur.execute(
            "SELECT idx, payload FROM pht_entries WHERE idx >= %s AND idx < %s ORDER BY idx",
            (start, stop),
        ).fetchall()
        if [int(r[0]) for r in rows] != list(range(start, stop)):
            raise DamagedEntryError(start, "rows are missing from pht_entries")
        return [bytes(r[1]) for r in rows]

    def catch_up(self, adopt: Adopt) -> None:
        """Hand ``adopt`` the entries other processes committed since this one last looked, and
        the newest published checkpoint when it is newer than the last one handed over."""
        with self._write_lock:
            if self._closed or self._stale:
                return  # the ledger reloads after an unknown outcome, not here
            row = self._query_one("SELECT size, checkpoint_size, checkpoint FROM pht_log")
            size, published = int(row[0]), int(row[1] or 0)
            note = bytes(row[2]) if published > self._published else None
            if size <= self._count and note is None:
                return
            newer = self.read_range(self._count, size, upto=size) if size > self._count else []
            self._readable = max(self._readable, size)  # readers woken by adopt read them
            adopt(newer, note)
            self._advance(newer)
            self._published = max(self._published, published)

    def watch(self, wake: Callable[[], None], elected: Callable[[], None]) -> None:
        """Call ``wake`` (from a thread of the store's) whenever another process may have
        appended or published: on its NOTIFY, and at least once a second; campaign to
        integrate, calling ``elected`` on each win (after :meth:`campaign`)."""
        self._watcher = Watcher(self.dsn, wake)
        if self._election is not None:
            self._election.start(elected)

    # ---- integrating

    def campaign(self) -> None:
        """Stand for integrator, with one attempt now (:mod:`.election`)."""
        if self._election is None:
            self._election = Election(self.dsn)
            self._election.try_once()

    def integrating(self) -> bool:
        """Whether this process signs the checkpoints (always, before :meth:`campaign`)."""
        return self._election is None or self._election.integrating

    @property
    def shared(self) -> bool:
        return True

    def publish(self, note: bytes, written: Callable[[bytes], None]) -> None:
        """Publish ``note`` for every process, soon (never blocks the caller); ``written(note)``
        once it is in ``pht_log``."""
        if self._publisher is None:
            self._publisher = Publisher(self.dsn, written)
        self._publisher.offer(note)

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
            return self._read.query(sql, params)

    def read(self, index: int) -> bytes:
        return self.read_range(index, index + 1)[0]

    def read_range(
        self, start: int, stop: int, *, checksums: bool = True, upto: int | None = None
    ) -> list[bytes]:
        count = max(self.count, self._readable) if upto is None else upto
        if not 0 <= start <= stop <= count:
            raise StoreError(f"entries {start}..{stop - 1} are out of range (the log has {count})")
        with self._recent_lock:
            first = self._count - len(self._recent)
            if first <= start and stop <= self._count:
                return list(itertools.islice(self._recent, start - first, stop - first))
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

    # ---- the checkpoint

    def save_checkpoint(self, note: bytes) -> None:
        """Keep ``note`` unless a replica already saved one for a larger tree."""
        with self._read_lock:
            save_checkpoint(self._read, note)
        if int(note.split(b"\n", 2)[1]) <= self._count:
            self._note = note

    def stored_checkpoint(self) -> bytes | None:
        """The checkpoint stored as of ``count`` (read with it; newer ones, which may cover
        entries this process has not read yet, come through ``catch_up``)."""
        if self._stale:
            self._refresh()
        return self._note

    @property
    def checkpoint_place(self) -> str:
        return f"the checkpoint in {shown(self.dsn)}"

    def sync_index(self) -> None:
        """Nothing to do: every committed append is durable in the database."""

    def _nudge(self) -> None:
        self._query(NOTIFY)

    def close(self) -> None:
        if self._closed:
            return
        if self._publisher is not None:
            self._publisher.close()  # the last checkpoint out before the lock is given up
        if self._election is not None:
            self._election.close()
        if self._watcher is not None:
            self._watcher.stop(self._nudge)
        self._closed = True
        with self._write_lock:
            self._write.close()
        with self._read_lock:
            self._read.close()
