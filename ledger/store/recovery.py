"""What a ledger recovers when it opens: its state, Merkle tree and event ids, from a trusted
snapshot and the entries after it, or from every entry.

Invariant: a registry never serves, or signs over, history other than what it signed: recovery
names the first damaged entry and refuses the open, and refuses a log that lost entries the stored
checkpoint covers. Nothing here writes; the ledger signs a fresh checkpoint for what it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import (
    CorruptStoreError,
    DamagedEntryError,
    UntrustedLogError,
    WithheldEntriesError,
)
from ledger.merkle import MerkleTree
from ledger.state import State
from ledger.store import Store
from ledger.store.idindex import IdIndex
from ledger.store.integrity import first_damage, recheck
from ledger.store.snapshot import Snapshot, read_snapshot
from ledger.trust import check_checkpoint, verify_note

log = logging.getLogger(__name__)

CHUNK = 4096  # entries re-checked per read


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovered:
    """The derived data of a ledger's entries, and the snapshot it started from (if any)."""

    state: State
    tree: MerkleTree
    ids: IdIndex
    snapshot_size: int  # the entries the snapshot used covers; 0 when none was
    from_snapshot: bool


def recover(data_dir: Path, store: Store) -> Recovered:
    """Recover the ledger in ``data_dir`` from ``store`` (whose own recovery has run).

    The snapshot is used only if its own digests hold (else :func:`read_snapshot` ignores it,
    with a warning, and the state is rebuilt from the log), and only if the entries it covers are
    still the bytes it was taken over: one sequential hash of the log against the digest the
    snapshot recorded; on a mismatch every entry is compared with its leaf hash, and the first
    damaged one is named and the open refused. Every entry after it is re-checked against the
    chain and the rules (their signatures were checked when they were appended; ``pht audit``
    re-verifies everything), and a record holding another entry is named as such. The stored
    checkpoint must be a prefix of the recovered tree (else acknowledged entries were lost, which
    is reported loudly).

    Raises DamagedEntryError naming the first damaged entry, CorruptStoreError when entries are
    missing or the log is not the history the stored checkpoint signed.
    """
    snapshot = read_snapshot(data_dir)
    count = store.count
    if snapshot is not None and snapshot.size > count:
        raise CorruptStoreError(
            f"the snapshot covers {snapshot.size} entries but the log holds only {count}: "
            "acknowledged entries are missing"
        )
    if snapshot is not None and _covered_intact(data_dir, store, snapshot):
        state, tree, ids = snapshot.state, snapshot.tree, snapshot.ids
        snapshot_size = snapshot.size
    else:
        snapshot = None
        state, tree, ids = State(), MerkleTree(), IdIndex()
        snapshot_size = 0
        store.start_digest(0)
    start = state.size
    if start < count:
        log.info("re-checking %d entries written after the last snapshot", count - start)
    for first in range(start, count, CHUNK):
        stop = min(count, first + CHUNK)
        try:
            misplaced = None
            try:
                chunk = store.read_range(first, stop)
            except DamagedEntryError as exc:
                # The index may point at moved records: walk the log to say what they hold.
                chunk, misplaced = store.read_range_scanned(first, stop), exc
            for position, data in enumerate(chunk, first):
                entry = recheck(state, position, data, snapshot_size=start)
                ids.add(bytes.fromhex(entry.event.event.id), entry.index)
                tree.append(entry.leaf_hash)
            if misplaced is not None:
                raise misplaced
        except DamagedEntryError as exc:
            raise refuse(data_dir, exc) from exc
    _check_stored_checkpoint(store, state, tree)
    return Recovered(
        state=state,
        tree=tree,
        ids=ids,
        snapshot_size=snapshot_size,
        from_snapshot=snapshot is not None,
    )


def _covered_intact(data_dir: Path, store: Store, snapshot: Snapshot) -> bool:
    """Whether the entries ``snapshot`` covers are the bytes it was taken over: one hash of
    the log's first ``log_bytes`` against the recorded digest, and only on a mismatch each
    entry against its leaf. Raises DamagedEntryError naming the first damaged entry; False
    when every entry holds but the snapshot's log digest does not (then it is not used)."""
    found = store.start_digest(snapshot.size)
    at = store.offset(snapshot.size)
    if (at, found) == (snapshot.log_bytes, snapshot.log_sha256):
        return True
    damage = first_damage(store, snapshot.tree, snapshot.size)
    if damage is not None:
        raise refuse(data_dir, damage) from damage
    log.warning(
        "snapshot of size %d: the log's first %d bytes hash to %s, not the %s of its %d "
        "bytes the snapshot recorded, though every entry still hashes to its leaf; ignoring "
        "the snapshot and rebuilding the state from the log",
        snapshot.size,
        at,
        found[:16],
        snapshot.log_sha256[:16],
        snapshot.log_bytes,
    )
    return False


def refuse(data_dir: Path, damage: DamagedEntryError) -> DamagedEntryError:
    """``damage`` with what it means for the data directory and how to recover."""
    return DamagedEntryError(
        damage.index,
        f"{damage.reason}. {data_dir / 'entries.log'} no longer holds what this registry "
        f"signed, so it will not be served or appended to: restore the data directory from a "
        f"backup that holds entry {damage.index} intact (`pht audit --data DIR` checks a copy)",
    )


def _check_stored_checkpoint(store: Store, state: State, tree: MerkleTree) -> None:
    """The recovered log is the history the stored checkpoint signed (through the trust
    core, as every reader checks it): else acknowledged entries are missing or altered."""
    note = store.stored_checkpoint()
    if note is None:
        return
    place = store.checkpoint_place
    if not state.size:  # a signed checkpoint over a log that holds nothing: all of it was lost
        raise CorruptStoreError(
            f"{place} is a checkpoint the registry signed, but the entry log holds no entry: "
            "acknowledged entries are missing; restore the data directory from a backup"
        )
    try:
        stored = verify_note(note, log_key=state.log_key, origin=state.origin)
        check_checkpoint(stored, tree, exact=False)
    except WithheldEntriesError as exc:
        raise CorruptStoreError(
            f"the stored checkpoint covers more entries than were recovered "
            f"({tree.size}): acknowledged entries are missing ({exc})"
        ) from exc
    except UntrustedLogError as exc:
        raise CorruptStoreError(
            f"the recovered log is not the history the stored checkpoint signed: {exc}"
        ) from exc
