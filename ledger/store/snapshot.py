"""Snapshots of the derived data: the replayed state, the Merkle tree levels and the event ids.

A snapshot lives in ``<data>/snapshots/<size>/`` (``state.json``, ``tree.bin``, ``ids.idx``) and is
published by atomically replacing ``<data>/SNAPSHOT``, which names it. Everything in a snapshot is
derived from the entry log and could be rebuilt from it; the snapshot only spares a large ledger a
full replay on open. It is written after the entry log and its index are fsynced, so it never
describes entries that are not durable.

``tree.bin``: for each Merkle level, a uint64 little-endian length then that level's bytes.
``ids.idx``: the event-id index (:class:`ledger.store.idindex.IdIndex`), as its raw arrays.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import CorruptStoreError
from ledger.merkle import MerkleTree
from ledger.state import State
from ledger.store.idindex import IdIndex

log = logging.getLogger(__name__)

POINTER = "SNAPSHOT"
_LEN = struct.Struct("<Q")


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    size: int
    state: State
    tree: MerkleTree
    ids: IdIndex


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_snapshot(data_dir: Path, *, state: State, tree: MerkleTree, ids: IdIndex) -> None:
    """Write and publish a snapshot of ``state`` (whose size must equal the tree's)."""
    if not state.size == tree.size == len(ids):
        raise CorruptStoreError(
            f"snapshot parts disagree: state {state.size}, tree {tree.size}, ids {len(ids)}"
        )
    root = data_dir / "snapshots"
    root.mkdir(exist_ok=True)
    final = root / str(state.size)
    work = root / f"{state.size}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    _write(work / "state.json", json.dumps(state.to_dict(), separators=(",", ":")).encode())
    _write(work / "tree.bin", b"".join(_LEN.pack(len(lv)) + lv for lv in tree.to_levels()))
    _write(work / "ids.idx", ids.to_bytes())
    _fsync_dir(work)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(work, final)
    _fsync_dir(root)
    pointer_tmp = data_dir / f"{POINTER}.tmp"
    _write(pointer_tmp, str(state.size).encode())
    os.replace(pointer_tmp, data_dir / POINTER)
    _fsync_dir(data_dir)
    for old in root.iterdir():
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)


def read_snapshot(data_dir: Path) -> Snapshot | None:
    """The published snapshot, or None when there is none or it cannot be read (then replay)."""
    try:
        name = (data_dir / POINTER).read_text().strip()
    except FileNotFoundError:
        return None
    folder = data_dir / "snapshots" / name
    try:
        state = State.from_dict(json.loads((folder / "state.json").read_bytes()))
        raw = (folder / "tree.bin").read_bytes()
        levels: list[bytes] = []
        pos = 0
        while pos < len(raw):
            (length,) = _LEN.unpack_from(raw, pos)
            levels.append(raw[pos + 8 : pos + 8 + length])
            pos += 8 + length
        tree = MerkleTree.from_levels(levels) if levels else MerkleTree()
        ids = IdIndex.from_bytes((folder / "ids.idx").read_bytes())
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        log.warning("snapshot %s is unreadable (%s); replaying the whole log", name, exc)
        return None
    except Exception as exc:  # a malformed snapshot must never stop recovery
        log.warning("snapshot %s is invalid (%s); replaying the whole log", name, exc)
        return None
    if not state.size == tree.size == len(ids):
        log.warning("snapshot %s is inconsistent; replaying the whole log", name)
        return None
    return Snapshot(size=state.size, state=state, tree=tree, ids=ids)
