"""Request nonces seen by any registry process on a shared ledger (table ``pht_nonces``), so a
signed request replayed to another replica is refused as it is by the one that answered it.

``first_use`` inserts ``(key id, nonce)`` with the time its signature stops being fresh; the
primary key refuses a second insert. Rows past that time are deleted now and then (a nonce that
old is refused by the freshness window anyway).

The inserts commit without waiting for the WAL flush (``synchronous_commit = off`` on this
connection only; the entries' transactions still wait for it). Every signed request inserts a
nonce, polls included: waiting for a flush made each request of a replica wait for a disk
write. What that gives up: after a crash of the database server itself (not of a replica), the
nonces of its last few hundred milliseconds may be forgotten, so such a request could be
replayed once to another replica within its freshness window (a POST of a signed event or a PUT
of a content-addressed blob lands once whatever the number of tries; a replayed GET or heartbeat
would be answered once more)."""

from __future__ import annotations

import threading

from ledger.store.postgres.schema import Connection, Session

SWEEP_EVERY = 1000  # inserts between deletions of stale rows


class Nonces:
    def __init__(self, dsn: str) -> None:
        self._session = Session(dsn, on_connect=_without_flush_wait)
        self._lock = threading.Lock()
        self._inserts = 0

    def first_use(self, key_id: str, nonce: str, *, until: float, now: float) -> bool:
        """Whether this is the first use of ``nonce`` by ``key_id`` (StoreError if the database
        does not answer)."""
        with self._lock:
            self._inserts += 1
            if self._inserts % SWEEP_EVERY == 0:
                self._session.query("DELETE FROM pht_nonces WHERE until < %s", (now,))
            rows = self._session.query(
                "INSERT INTO pht_nonces (key_id, nonce, until) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                (key_id, nonce, until),
            )
        return bool(rows)

    def close(self) -> None:
        with self._lock:
            self._session.close()


def _without_flush_wait(conn: Connection) -> None:
    conn.execute("SET synchronous_commit = off")
