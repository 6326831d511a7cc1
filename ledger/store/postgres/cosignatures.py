"""Witness cosignatures kept in the ledger's database (table ``pht_cosignatures``), shared by the
registry processes on it (:class:`ledger.store.cosignatures.CosignatureLines`).

Each accepted line is inserted at once (one row per size and witness; a line a second process
took for the same pair is kept as the first) and wakes the other processes (the ledger's NOTIFY
channel); ``newer`` reads the rows inserted since this process last looked, by their serial id.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ledger.store.cosignatures import Record
from ledger.store.postgres.schema import Session

_INSERT = """
WITH kept AS (
    INSERT INTO pht_cosignatures (size, witness, line) VALUES (%s, %s, %s)
    ON CONFLICT DO NOTHING RETURNING 1
)
SELECT pg_notify('pht_appended', current_schema()) FROM kept
"""


class PostgresLines:
    def __init__(self, dsn: str) -> None:
        self._session = Session(dsn)
        self._lock = threading.Lock()
        self._seen = 0  # the largest row id read
        self._closed = False

    def _since(self) -> list[Record]:
        with self._lock:
            if self._closed:
                return []  # the ledger is closing: nothing more to serve
            rows = self._session.query(
                "SELECT id, size, witness, line FROM pht_cosignatures WHERE id > %s ORDER BY id",
                (self._seen,),
            )
            if rows:
                self._seen = int(rows[-1][0])
        return [(int(size), str(witness), str(line)) for _, size, witness, line in rows]

    def load(self) -> Iterable[Record]:
        return self._since()

    def newer(self) -> Iterable[Record]:
        return self._since()

    def add(self, record: Record) -> None:
        with self._lock:
            self._session.query(_INSERT, record)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._session.close()
