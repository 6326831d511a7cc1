"""The PostgreSQL backend (DESIGN 10): the same ledger's entries and blobs in a database.

``pht init --store postgresql://...`` and ``pht serve --store postgresql://...`` select it; the
data directory still holds the log key, the snapshot, the checkpoint and the cosignatures.

- :mod:`.frames` (pure): the byte sequence the entries form, for offsets and the log digest.
- :mod:`.schema`: the tables and the connection (the only module that imports psycopg).
- :mod:`.entries`: :class:`PostgresStore`, the :class:`ledger.store.Store` over the tables.
- :mod:`.blobs`: :class:`PostgresBlobs`, content-addressed blobs in the database.
"""

from __future__ import annotations

SCHEMES = ("postgresql://", "postgres://")


def is_database_url(text: str) -> bool:
    """Whether ``--store`` names a PostgreSQL database rather than a data directory."""
    return text.startswith(SCHEMES)
