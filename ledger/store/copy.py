"""Copying a ledger from one store to another (``pht store copy``): the data directory's to a
PostgreSQL database, or back, verified on both ends.

Invariant: the copy is accepted only when the target holds exactly the source's bytes. Before
anything is written, every source entry is replayed (hash, chain, signatures, rules: the same
:func:`ledger.verify.verify_ledger` ``pht audit`` runs) and the source's stored checkpoint is
checked against the replayed tree; then the entries, every blob (each hashed through on the way)
and the checkpoint are written, and the target is read back: the same entries, the same Merkle
root, the same log digest (both stores frame entries alike), the same checkpoint.

Witness cosignatures (DESIGN 12) go along, line for line, and are read back the same. Each one by
a witness key a member still publishes must verify over the copied tree's checkpoint of its size
(a damaged line refuses the copy, before anything is written); a line by a key since retired is
carried as it is, as the source serves it (every reader verifies cosignatures itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ledger.checkpoint import Checkpoint
from ledger.cosignature import line_key, parse_witness_key, verify_cosignature
from ledger.errors import LedgerError, StoreError, UntrustedLogError
from ledger.merkle import MerkleTree
from ledger.proofs import leaf_hash
from ledger.state import State
from ledger.store import Blobs, Store
from ledger.store.backend import Backend
from ledger.store.cosignatures import FileLines, Record, read_file_lines
from ledger.trust import check_checkpoint, verify_note
from ledger.verify import verify_ledger

CHUNK = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Copied:
    entries: int
    root: bytes
    blobs: int
    checkpoint_size: int | None  # the stored checkpoint's size (None: the source had none)
    log_bytes: int
    cosignatures: int


def read_all(store: Store) -> list[bytes]:
    count = store.count
    out: list[bytes] = []
    for first in range(0, count, CHUNK):
        out += store.read_range(first, min(count, first + CHUNK))
    return out


def copy_ledger(source: Backend, open_target: Callable[[], Backend]) -> Copied:
    """Copy everything from ``source`` into the new store ``open_target`` creates (only once
    the source checked out, so a refused copy leaves no target behind). Raises
    VerificationError naming the first bad source entry, StoreError when the source's checkpoint
    does not sign its entries, when the target does not read back what was written, or when a
    store fails."""
    source_blobs = source.blobs
    source_store = source.store
    records = read_all(source_store)
    if not records:
        raise StoreError("the source holds no ledger")
    verified = verify_ledger(records)
    note = source_store.stored_checkpoint()
    checkpoint_size = None
    if note is not None:
        try:
            stored = verify_note(note, log_key=verified.state.log_key, origin=verified.state.origin)
            check_checkpoint(stored, verified.tree, exact=False)
        except UntrustedLogError as exc:
            raise StoreError(
                f"{source_store.checkpoint_place} does not sign the source's entries: {exc}"
            ) from exc
        checkpoint_size = stored.size
    lines = cosignatures_of(source)
    check_cosignatures(lines, verified.state, verified.tree)
    target = open_target()
    try:
        copied = _write(
            source_store,
            source_blobs,
            target.store,
            target.blobs,
            records=records,
            root=verified.tree.root(),
            note=note,
            checkpoint_size=checkpoint_size,
        )
        _write_cosignatures(target, lines)
        return replace(copied, cosignatures=len(lines))
    finally:
        target.close()


def cosignatures_of(backend: Backend) -> list[Record]:
    """Every witness cosignature line the ledger in ``backend`` holds."""
    if backend.cosignatures is not None:
        return list(backend.cosignatures.load())
    return read_file_lines(backend.data_dir) if backend.data_dir is not None else []


def check_cosignatures(lines: list[Record], state: State, tree: MerkleTree) -> None:
    """Each line by a witness key a member still publishes verifies over the tree's checkpoint
    of its size (see the module). Raises StoreError naming the first that does not."""
    published = {m.name: m.witness_key for m in state.members.values() if m.witness_key}
    for size, witness, line in lines:
        if not 0 < size <= tree.size:
            raise StoreError(
                f"the source holds a cosignature by {witness!r} for size {size}, beyond its "
                f"{tree.size} entries"
            )
        key_text = published.get(witness)
        if key_text is None:
            continue
        try:
            key = parse_witness_key(key_text)
            if line_key(line) != (key.name, key.key_hash):
                continue  # by a key the member has since replaced: carried as it is
            checkpoint = Checkpoint(origin=state.origin, size=size, root=tree.root(size))
            verify_cosignature(line, checkpoint, key)
        except LedgerError as exc:
            raise StoreError(
                f"the source's cosignature by {witness!r} for size {size} does not verify: {exc}"
            ) from exc


def _write_cosignatures(target: Backend, lines: list[Record]) -> None:
    if target.cosignatures is not None:
        book = target.cosignatures
        for record in lines:
            book.add(record)
    elif lines and target.data_dir is not None:
        written = FileLines(target.data_dir)
        try:
            for record in lines:
                written.add(record)
        finally:
            written.close()
    if sorted(cosignatures_of(target)) != sorted(lines):
        raise StoreError("the target does not read back the source's witness cosignatures")


def _write(
    source: Store,
    source_blobs: Blobs,
    target: Store,
    target_blobs: Blobs,
    *,
    records: list[bytes],
    root: bytes,
    note: bytes | None,
    checkpoint_size: int | None,
) -> Copied:
    if target.count:
        raise StoreError(f"the target already holds {target.count} entries; copy into an empty one")
    for first in range(0, len(records), CHUNK):
        target.append_batch(records[first : first + CHUNK])
    blobs = 0
    for name in source_blobs.names():
        with source_blobs.open_verified(name) as data:
            target_blobs.put_stream(data, name)
        blobs += 1
    if note is not None:
        target.save_checkpoint(note)

    copied = read_all(target)
    if copied != records:
        first = next(
            (i for i, (a, b) in enumerate(zip(copied, records, strict=False)) if a != b),
            min(len(copied), len(records)),
        )
        raise StoreError(f"the target does not read back entry {first} as written")
    tree = MerkleTree()
    tree.extend(leaf_hash(record) for record in copied)
    if tree.root() != root:
        raise StoreError("the target's Merkle root differs from the source's")
    source.start_digest(len(records))
    target.start_digest(len(records))
    if source.digest() != target.digest():
        raise StoreError("the target's log digest differs from the source's")
    if target.stored_checkpoint() != note:
        raise StoreError("the target does not read back the source's checkpoint")
    for name in source_blobs.names():
        target_blobs.open_verified(name).close()
    return Copied(
        entries=len(records),
        root=tree.root(),
        blobs=blobs,
        checkpoint_size=checkpoint_size,
        log_bytes=target.digest()[0],
        cosignatures=0,
    )
