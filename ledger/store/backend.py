"""Where a ledger's entries and blobs live: the data directory (the embedded store, the default)
or a PostgreSQL database (``postgresql://...``; :mod:`ledger.store.postgres`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import StoreError
from ledger.store import Blobs, Store
from ledger.store.blobs import BlobStore
from ledger.store.cosignatures import CosignatureLines
from ledger.store.entries import EntryStore
from ledger.store.logfiles import LOG_NAME, lock_dir
from ledger.store.postgres import is_database_url
from ledger.store.postgres.blobs import PostgresBlobs
from ledger.store.postgres.cosignatures import PostgresLines
from ledger.store.postgres.entries import PostgresStore
from ledger.store.postgres.nonces import Nonces


@dataclass(frozen=True, slots=True)
class Backend:
    store: Store
    blobs: Blobs
    nonces: Nonces | None  # request nonces shared by the replicas of a database's ledger
    dir_lock: int | None = None  # the data directory's LOCK, when the store is not the directory
    cosignatures: CosignatureLines | None = None  # shared by the replicas (None: a file)
    data_dir: Path | None = None  # the embedded store's directory (its cosignatures.log)

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.close_rest()

    def close_rest(self) -> None:
        """Everything but the store."""
        self.blobs.close()
        if self.nonces is not None:
            self.nonces.close()
        if self.cosignatures is not None:
            self.cosignatures.close()  # idempotent: the ledger's book closed it already
        if self.dir_lock is not None:
            os.close(self.dir_lock)


def open_for_ledger(data_dir: Path, url: str | None, *, create: bool) -> Backend:
    """:func:`open_backend` for a registry process: with a database, ``data_dir`` (which keeps
    the snapshot and the cosignatures) is created if need be and locked too, so one process
    uses it, as with the embedded store."""
    if url is None:
        return open_backend(data_dir, None, create=create)
    data_dir.mkdir(parents=True, exist_ok=True)
    guard = lock_dir(data_dir)
    try:
        opened = open_backend(data_dir, url, create=create)
    except BaseException:
        os.close(guard)
        raise
    return Backend(opened.store, opened.blobs, opened.nonces, guard, opened.cosignatures)


def open_backend(data_dir: Path, url: str | None, *, create: bool) -> Backend:
    """The entry store, blob store and nonce book of the ledger in ``url`` (None: ``data_dir``
    itself). ``create``: a new ledger; refuse one that exists. Otherwise refuse where there is
    none."""
    if url is None:
        exists = (data_dir / LOG_NAME).exists()
        if create and exists:
            raise StoreError(f"{data_dir} already holds a ledger; refusing to overwrite it")
        if not create and not exists:
            raise StoreError(f"{data_dir} holds no ledger (run `pht init` first)")
        if create:
            data_dir.mkdir(parents=True, exist_ok=True)
        embedded = EntryStore.open(data_dir)
        return Backend(embedded, BlobStore(data_dir / "objects"), None, data_dir=data_dir)
    if not is_database_url(url):
        raise StoreError(f"--store {url!r}: expected a postgresql:// URL")
    store = PostgresStore.open(url, create=create)
    try:
        blobs = PostgresBlobs(store.dsn)
    except BaseException:
        store.close()
        raise
    rest: list[Nonces | PostgresLines] = []
    try:
        rest.append(nonces := Nonces(store.dsn))
        rest.append(lines := PostgresLines(store.dsn))
        return Backend(store, blobs, nonces, cosignatures=lines)
    except BaseException:
        for opened in rest:
            opened.close()
        blobs.close()
        store.close()
        raise
