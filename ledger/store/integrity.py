"""What the store serves must hash to what the ledger signed.

Every entry the registry serves is the exact bytes whose leaf hash, ``SHA-256(0x00 || bytes)``, is
in the Merkle tree, and so under the signed checkpoint; a record whose bytes no longer hash to its
leaf (altered, swapped with another, duplicated, moved) is damage, and damage is named and never
served. Checking a page costs one SHA-256 per entry and one comparison of the concatenated hashes
with the tree's leaf level; only a mismatch looks at entries one by one to say which and how.

:func:`check_leaves` is pure (bytes and hashes in, :class:`DamagedEntryError` out);
:func:`recheck` folds an entry the snapshot does not cover into the state through the rules,
naming it when its record holds something else; :func:`first_damage` walks a store's entries
against a tree, for the ledger's open.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Protocol

from ledger.errors import DamagedEntryError, LedgerError
from ledger.events import Entry
from ledger.merkle import HASH_SIZE, MerkleTree
from ledger.rules import apply
from ledger.state import State

CHUNK = 4096

_sha256 = hashlib.sha256


class EntryReader(Protocol):
    def read_range(self, start: int, stop: int) -> list[bytes]: ...

    def read_range_scanned(self, start: int, stop: int) -> list[bytes]: ...


def leaf_hashes(payloads: Sequence[bytes]) -> bytes:
    """The leaf hashes of ``payloads``, concatenated."""
    return b"".join([_sha256(b"\x00" + data).digest() for data in payloads])


def check_leaves(first: int, payloads: Sequence[bytes], expected: bytes) -> None:
    """Check that ``payloads`` (entries ``first``, ``first + 1``, ...) hash to the concatenated
    leaf hashes ``expected``. Raises :class:`DamagedEntryError` naming the first that does not,
    and saying whether its record holds another entry or altered bytes."""
    if leaf_hashes(payloads) == expected:
        return
    for offset, data in enumerate(payloads):
        want = expected[offset * HASH_SIZE : (offset + 1) * HASH_SIZE]
        found = _sha256(b"\x00" + data).digest()
        if found != want:
            raise DamagedEntryError(first + offset, describe(first + offset, data, found, want))
    raise DamagedEntryError(  # only if the caller passed a wrong number of hashes
        first,
        f"expected {len(payloads)} leaf hashes to compare with, found {len(expected) // HASH_SIZE}",
    )


def describe(index: int, data: bytes, found: bytes, want: bytes) -> str:
    """What is wrong with entry ``index`` whose record holds ``data`` (leaf ``found``, not
    ``want``)."""
    holds = _index_field(data)
    if holds is None:
        what = "its record holds bytes that are not an entry"
    elif holds != index:
        what = f"its record holds entry {holds} (records swapped, duplicated or moved)"
    else:
        what = "its bytes were altered"
    return (
        f"{what}: they hash to leaf {found.hex()[:16]}, but the Merkle tree (under the signed "
        f"checkpoint) has {want.hex()[:16]}"
    )


def _index_field(data: bytes) -> int | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    index = value.get("index") if isinstance(value, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def first_damage(store: EntryReader, tree: MerkleTree, stop: int) -> DamagedEntryError | None:
    """The first of entries ``0`` to ``stop - 1`` whose record is damaged or does not hash to
    its leaf in ``tree``, or None when all of them do."""
    for first in range(0, stop, CHUNK):
        last = min(stop, first + CHUNK)
        try:
            payloads = store.read_range(first, last)
        except DamagedEntryError as misplaced:
            # The index may point at records that were moved: walk the log to say what they hold.
            try:
                check_leaves(
                    first, store.read_range_scanned(first, last), tree.leaf_hashes(first, last)
                )
            except DamagedEntryError as exc:
                return exc
            return misplaced
        try:
            check_leaves(first, payloads, tree.leaf_hashes(first, last))
        except DamagedEntryError as exc:
            return exc
    return None


def recheck(state: State, position: int, data: bytes, *, snapshot_size: int) -> Entry:
    """Fold entry ``position`` (written after the snapshot of ``snapshot_size`` entries, so not
    covered by its leaf hashes) into ``state`` after checking it against the chain and the rules
    (its signature was checked when it was appended). Raises DamagedEntryError naming it when its
    record holds another entry, bytes that are not an entry, or an entry that does not continue
    the ones before it."""
    try:
        entry = Entry.from_canonical(data)
    except LedgerError as exc:
        raise DamagedEntryError(
            position, f"its record holds bytes that are not an entry ({exc})"
        ) from exc
    if entry.index != position:
        raise DamagedEntryError(
            position,
            f"its record holds entry {entry.index} (records swapped, duplicated or moved)",
        )
    try:
        apply(state, entry, signature_checked=True)
    except LedgerError as exc:
        after = f"written after the snapshot of size {snapshot_size}, " if snapshot_size else ""
        raise DamagedEntryError(
            position,
            f"{after}it does not continue the entries before it (it, or the one before it, "
            f"was altered): {exc}",
        ) from exc
    return entry
