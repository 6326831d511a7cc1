"""Reading a registry's stored ledger for an auditor, without the registry's lock.

``read_log`` checks each record of a data directory's log for its framing and checksum and names
the first damaged entry; ``read_stored`` reads the whole stored ledger (the records, the last
checkpoint the registry saved, its blobs) from the data directory or, for a ledger created with
``pht init --store``, from its PostgreSQL database. What the records say is then for
:func:`ledger.audit.audit` to verify.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import DamagedEntryError, VerificationError
from ledger.store import Blobs
from ledger.store.blobs import BlobStore
from ledger.store.postgres.blobs import PostgresBlobs
from ledger.store.postgres.entries import PostgresStore
from ledger.store.postgres.schema import shown
from ledger.store.records import find_valid_record, scan

log = logging.getLogger(__name__)


def read_log(data_dir: Path) -> list[bytes]:
    """Every record's payload of ``data_dir/entries.log``; VerificationError at damage.

    A torn record at the very end (a write that never completed) ends the log with a warning:
    it was never acknowledged. Damage followed by valid records is an error naming the entry.
    """
    path = Path(data_dir) / "entries.log"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VerificationError(None, f"cannot read {path}: {exc.strerror}") from exc

    def read(offset: int, size: int) -> bytes:
        return data[offset : offset + size]

    found = scan(read, 0, len(data))
    if found.problem is not None:
        index = len(found.offsets)
        if find_valid_record(read, found.end + 1, len(data)) is not None:
            raise VerificationError(index, f"the record in {path} is damaged ({found.problem})")
        log.warning("entry %d: torn tail record ignored (%s)", index, found.problem)
    records = []
    for offset in found.offsets:
        length = int.from_bytes(data[offset + 4 : offset + 8], "little")
        records.append(data[offset + 12 : offset + 12 + length])
    return records


@dataclass(frozen=True, slots=True)
class StoredLedger:
    """What a registry stored: every record, the last checkpoint it saved (None before the
    first), its blobs (close them when done) and where it lives (a path or a database URL
    without its password)."""

    records: list[bytes]
    checkpoint: bytes | None
    blobs: Blobs
    where: str


def read_stored(data_dir: Path, store_url: str | None = None) -> StoredLedger:
    """The ledger stored in ``data_dir``, or in the database ``store_url`` when given.

    Raises VerificationError naming the first damaged entry, StoreError when the database holds
    no ledger or cannot be reached.
    """
    if store_url is None:
        stored = Path(data_dir) / "checkpoint"
        return StoredLedger(
            records=read_log(data_dir),
            checkpoint=stored.read_bytes() if stored.exists() else None,
            blobs=BlobStore(Path(data_dir) / "objects", read_only=True),
            where=str(Path(data_dir).resolve()),
        )
    store = PostgresStore.open(store_url)  # StoreError: no ledger there, or unreachable
    try:
        records = store.read_range(0, store.count)
        checkpoint = store.stored_checkpoint()
    except DamagedEntryError as exc:
        raise VerificationError(exc.index, exc.reason) from exc
    finally:
        store.close()
    return StoredLedger(records, checkpoint, PostgresBlobs(store.dsn), shown(store_url))
