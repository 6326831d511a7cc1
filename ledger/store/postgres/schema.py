"""The tables of a PostgreSQL ledger, and connecting to it. The only module importing psycopg.

Tables (in the connection's ``search_path`` schema, so one database can hold several ledgers)::

    pht_log      the coordination row: how many entries are sequenced and the length of their
                 frames, and the latest signed checkpoint the ledger saved. Appends lock it
                 (SELECT ... FOR UPDATE), so indexes are dense and gap-free (a SEQUENCE would
                 leave gaps behind aborted transactions).
    pht_entries  idx (dense from 0), start (frame offset), payload (canonical bytes), sha256
    pht_blobs    content-addressed blobs: sha256 (hex name), size, data
    pht_nonces   request-signature nonces any replica accepted (ledger.store.postgres.nonces)
    pht_cosignatures  witness cosignatures any replica accepted (.cosignatures)

Any number of registry processes may share one ledger (:mod:`ledger.store.postgres.entries`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ledger.errors import StoreError

DDL = """
CREATE TABLE IF NOT EXISTS pht_log (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    size bigint NOT NULL CHECK (size >= 0),
    bytes bigint NOT NULL CHECK (bytes >= 0),
    checkpoint bytea,
    checkpoint_size bigint
);
INSERT INTO pht_log (id, size, bytes) VALUES (true, 0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS pht_entries (
    idx bigint PRIMARY KEY CHECK (idx >= 0),
    start bigint NOT NULL CHECK (start >= 0),
    payload bytea NOT NULL,
    sha256 bytea NOT NULL CHECK (length(sha256) = 32)
);
CREATE TABLE IF NOT EXISTS pht_nonces (
    key_id text NOT NULL,
    nonce text NOT NULL,
    until double precision NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE TABLE IF NOT EXISTS pht_cosignatures (
    id bigserial PRIMARY KEY,
    size bigint NOT NULL CHECK (size > 0),
    witness text NOT NULL,
    line text NOT NULL,
    UNIQUE (size, witness)
);
CREATE TABLE IF NOT EXISTS pht_blobs (
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size bigint NOT NULL CHECK (size >= 0),
    data bytea NOT NULL
);
"""

# Wakes the other registry processes on the ledger; the payload names the ledger's schema.
NOTIFY = "SELECT pg_notify('pht_appended', current_schema())"
LISTEN = "LISTEN pht_appended"

Connection = Any  # psycopg.Connection[tuple[Any, ...]]; psycopg is an optional dependency


def shown(dsn: str) -> str:
    """``dsn`` without a password, for messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        userinfo, host = rest.rsplit("@", 1)
        return f"{scheme}://{userinfo.split(':', 1)[0]}@{host}"
    return dsn


@functools.cache
def _psycopg() -> ModuleType | None:
    """psycopg, imported on first use (an embedded ledger never pays for it); None if absent."""
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        return None


def connect(dsn: str) -> Connection:
    """An autocommit connection to ``dsn``; StoreError naming the fix when there is none."""
    psycopg = _psycopg()
    if psycopg is None:
        raise StoreError(
            "the PostgreSQL store needs psycopg 3: pip install 'pht[postgres]' "
            "(or 'psycopg[binary]')"
        )
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {shown(dsn)}: {exc}".strip()) from exc


class Session:
    """One connection to ``dsn`` that comes back after the database went away: ``get`` returns
    it, reconnecting (and running ``on_connect`` on the new connection) once it broke. Not
    thread-safe; its owner serializes the use."""

    def __init__(self, dsn: str, on_connect: Callable[[Connection], None] | None = None) -> None:
        self.dsn = dsn
        self._on_connect = on_connect
        self._conn: Connection | None = None
        self._closed = False
        self.get()

    def get(self) -> Connection:
        if self._closed:
            raise StoreError("the PostgreSQL store is closed")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
            self._conn = None
        conn = connect(self.dsn)
        try:
            if self._on_connect is not None:
                self._on_connect(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def broken(self) -> bool:
        """Whether the database dropped the connection (the next ``get`` makes a new one)."""
        return self._conn is None or bool(self._conn.closed or self._conn.broken)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one autocommit statement (none for a statement without); tried again
        once on a new connection when the database had dropped this one."""
        for attempt in (1, 2):
            try:
                cur = self.get().execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
            except database_error() as exc:
                if attempt == 1 and self.broken():
                    continue
                raise StoreError(f"{shown(self.dsn)}: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def database_error() -> type[Exception]:
    """The exception class every psycopg failure derives from."""
    psycopg = _psycopg()
    error: type[Exception] = psycopg.Error if psycopg is not None else OSError
    return error


# Keep a checkpoint unless one for a larger tree is there; wake the other processes when kept.
_SAVE_CHECKPOINT = """
WITH kept AS (
    UPDATE pht_log SET checkpoint = %s, checkpoint_size = %s
    WHERE checkpoint_size IS NULL OR checkpoint_size < %s RETURNING 1
)
SELECT pg_notify('pht_appended', current_schema()) FROM kept
"""


def save_checkpoint(session: Session, note: bytes) -> None:
    """Publish ``note`` in ``pht_log`` unless a checkpoint for a larger tree is there."""
    size = int(note.split(b"\n", 2)[1])
    session.query(_SAVE_CHECKPOINT, (note, size, size))


def has_ledger(conn: Connection) -> bool:
    """Whether the schema holds a ledger with at least one entry."""
    row = conn.execute("SELECT to_regclass('pht_log') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return False
    size = conn.execute("SELECT size FROM pht_log").fetchone()
    return bool(size and size[0] > 0)


def create_tables(conn: Connection) -> None:
    """Create the tables, or add those a ledger made by an older release lacks (idempotent;
    replicas starting at once take turns)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(1886893058)")
        conn.execute(DDL)
