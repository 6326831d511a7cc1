"""Reading a data directory's entry log for an auditor, without the registry's lock.

``read_log`` checks each record's framing and checksum and names the first damaged entry; what
the records say is then for :func:`ledger.audit.audit` to verify.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ledger.errors import VerificationError
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
