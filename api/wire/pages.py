"""The wire layout of an entries page (``GET /v1/events``), written by the registry and read by
auditors, who need each entry's exact stored bytes.

The page is plain JSON, ``{"entries":[<entry>,\\n<entry>...],"next":N,"size":S}``, with the entries
separated by :data:`ENTRY_SEPARATOR`. Canonical JSON never holds a raw newline, so the entries'
stored bytes can be cut out of the page without parsing and re-encoding them.

Fast path (the section at the end): ``_cut_records`` must equal ``_reencoded_records``, the general
reading of any JSON layout of the page, whenever it returns records of canonical entries (the only
kind a registry stores; others it returns as sent, for the auditor to refuse). Pinned by
``tests/api/test_pages.py::test_cut_records_equal_the_reencoded_ones`` (and end to end by
``tests/api/test_integration.py::test_auditor_reads_the_exact_stored_bytes_of_entries``).
Justified by ``bench/fast_paths_bench.py``: a 1,000-entry page is read 17x as fast as by the
general path, which keeps ``pht audit --registry`` near the in-process replay rate
(``bench/audit_bench.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from api.errors import ProtocolError
from ledger.canonical import canonical_bytes
from ledger.errors import LedgerError

# Between two entries of a page: the registry joins with it, auditors split on it.
ENTRY_SEPARATOR = b",\n"
_HEAD = b'{"entries":['
_TAIL = b'],"next":'


def entries_page(entries: Sequence[bytes], next_index: int, size: int) -> bytes:
    """The page holding the stored bytes ``entries``, then ``next`` and the ledger's ``size``."""
    return b"".join(
        (
            _HEAD,
            ENTRY_SEPARATOR.join(entries),
            _TAIL,
            str(next_index).encode(),
            b',"size":',
            str(size).encode(),
            b"}",
        )
    )


def page_records(content: bytes) -> tuple[list[bytes], int]:
    """Each entry's bytes as the registry stored them, and the ledger's size; a page cut wrongly
    can only fail the auditor's verification (canonical form, hashes, Merkle root against a
    signed checkpoint), never pass it. Raises :class:`ProtocolError` for a malformed page."""
    cut = _cut_records(content)
    return cut if cut is not None else _reencoded_records(content)


def _reencoded_records(content: bytes) -> tuple[list[bytes], int]:
    """The general path: parse any JSON layout of the page and re-encode each entry."""
    try:
        value = json.loads(content)
        records = [canonical_bytes(item) for item in value["entries"]]
        size = _size(value)
    except (ValueError, KeyError, TypeError, LedgerError) as exc:
        raise ProtocolError(f"malformed entries page: {exc}") from exc
    return records, size


# ---- fast path: cut the records out of the registry's own layout ------------------------------


def _cut_records(content: bytes) -> tuple[list[bytes], int] | None:
    """The records of a page in :func:`entries_page`'s layout, cut out; None for any other."""
    cut = content.rfind(_TAIL)
    if not content.startswith(_HEAD) or cut < len(_HEAD):
        return None
    body = content[len(_HEAD) : cut]
    records = body.split(ENTRY_SEPARATOR) if body else []
    if any(b"\n" in record for record in records):
        return None
    try:
        value = json.loads(b"{" + content[cut + 2 :])
        return records, _size(value)
    except ValueError:
        return None


def _size(value: object) -> int:
    size = value.get("size") if isinstance(value, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("'size': expected a non-negative integer")
    return size
