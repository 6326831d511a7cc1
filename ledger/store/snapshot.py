"""Snapshots of the derived data: the replayed state, the Merkle tree levels and the event ids.

A snapshot lives in ``<data>/snapshots/<size>/`` (``state.json``, ``tree.bin``, ``ids.idx`` and
``manifest.json``) and is published by atomically replacing ``<data>/SNAPSHOT``, which names it.
Everything in a snapshot is derived from the entry log and could be rebuilt from it; the snapshot
only spares a large ledger a full replay on open. It is written after the entry log and its index
are fsynced, so it never describes entries that are not durable.

``tree.bin``: for each Merkle level, a uint64 little-endian length then that level's bytes.
``ids.idx``: the event-id index (:class:`ledger.store.idindex.IdIndex`), as its raw arrays.
``manifest.json``: what the snapshot was taken at and of, checked before anything is loaded::

    {"format": 2, "size": <entries>, "root": <hex Merkle root at that size>,
     "log_bytes": <length of entries.log at that size>, "log_sha256": <hex SHA-256 of those bytes>,
     "files": {"ids.idx": <hex SHA-256>, "state.json": ..., "tree.bin": ...},
     "digest": <hex SHA-256 of the JSON of every other member, keys sorted, no spaces>}

Invariant: a snapshot is used only if its manifest is whole, every file hashes to the digest the
manifest recorded, the parts agree on the size and the tree's root is the recorded root. Anything
else (an edited state, a flipped bit in the tree, a snapshot written before manifests existed) is
logged as a warning naming what did not match, and the ledger rebuilds from the log instead: a
snapshot is never loaded as is. The log digest lets the ledger check, with one sequential hash, that
the entries the snapshot covers are still the bytes it was taken over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import CorruptStoreError
from ledger.merkle import MerkleTree
from ledger.state import State
from ledger.store.idindex import IdIndex

log = logging.getLogger(__name__)

POINTER = "SNAPSHOT"
MANIFEST = "manifest.json"
FORMAT = 3  # 3: each site's progress keeps its history; older snapshots are replayed
PARTS = ("ids.idx", "state.json", "tree.bin")
_LEN = struct.Struct("<Q")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    size: int
    state: State
    tree: MerkleTree
    ids: IdIndex
    log_bytes: int  # the length of entries.log when the snapshot was taken (entry ``size`` on)
    log_sha256: str  # the SHA-256 of those bytes, hex


class _Unusable(Exception):
    """Why a snapshot cannot be used (the message is logged; the ledger replays the log)."""


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


def _manifest_digest(members: dict[str, object]) -> str:
    return hashlib.sha256(
        json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def write_snapshot(
    data_dir: Path,
    *,
    state: State,
    tree: MerkleTree,
    ids: IdIndex,
    log_bytes: int,
    log_sha256: str,
) -> None:
    """Write and publish a snapshot of ``state`` (whose size must equal the tree's), taken when
    the entry log was ``log_bytes`` long and hashed to ``log_sha256``."""
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
    parts: dict[str, Callable[[], bytes]] = {  # made one at a time (peak memory)
        "state.json": lambda: json.dumps(state.to_dict(), separators=(",", ":")).encode(),
        "tree.bin": lambda: b"".join(_LEN.pack(len(lv)) + lv for lv in tree.to_levels()),
        "ids.idx": ids.to_bytes,
    }
    files: dict[str, str] = {}
    for name, make in parts.items():
        data = make()
        _write(work / name, data)
        files[name] = hashlib.sha256(data).hexdigest()
        del data
    manifest: dict[str, object] = {
        "format": FORMAT,
        "size": state.size,
        "root": tree.root().hex(),
        "log_bytes": log_bytes,
        "log_sha256": log_sha256,
        "files": dict(sorted(files.items())),
    }
    manifest["digest"] = _manifest_digest(manifest)
    _write(work / MANIFEST, json.dumps(manifest, sort_keys=True, indent=1).encode())
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
    """The published snapshot, or None when there is none or it cannot be trusted (then the
    ledger replays the log). Every reason not to use one is logged as a warning naming it."""
    try:
        name = (data_dir / POINTER).read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s is unreadable (%s); rebuilding the state from the log", POINTER, exc)
        return None
    folder = data_dir / "snapshots" / name
    try:
        return _load(folder)
    except _Unusable as exc:
        log.warning(
            "snapshot %s: %s; ignoring it and rebuilding the state from the log", folder, exc
        )
    except OSError as exc:
        log.warning(
            "snapshot %s is unreadable (%s); rebuilding the state from the log", folder, exc
        )
    except Exception as exc:  # a malformed snapshot must never stop recovery
        log.warning("snapshot %s is invalid (%r); rebuilding the state from the log", folder, exc)
    return None


def _load(folder: Path) -> Snapshot:
    manifest = _manifest(folder)
    files: dict[str, str] = manifest["files"]
    # Each part is checked before it is parsed, and parsed before the next is read (peak memory).
    state = State.from_dict(json.loads(_part(folder, "state.json", files)))
    raw = _part(folder, "tree.bin", files)
    levels: list[bytes] = []
    pos = 0
    while pos < len(raw):
        (length,) = _LEN.unpack_from(raw, pos)
        levels.append(raw[pos + 8 : pos + 8 + length])
        pos += 8 + length
    del raw
    tree = MerkleTree.from_levels(levels) if levels else MerkleTree()
    del levels
    ids = IdIndex.from_bytes(_part(folder, "ids.idx", files))
    size = manifest["size"]
    if not size == state.size == tree.size == len(ids):
        raise _Unusable(
            f"its parts disagree on the size: manifest {size}, state {state.size}, "
            f"tree {tree.size}, ids {len(ids)}"
        )
    if tree.root().hex() != manifest["root"]:
        raise _Unusable(
            f"tree.bin's root is {tree.root().hex()}, the manifest recorded {manifest['root']}"
        )
    return Snapshot(
        size=size,
        state=state,
        tree=tree,
        ids=ids,
        log_bytes=manifest["log_bytes"],
        log_sha256=manifest["log_sha256"],
    )


def _part(folder: Path, name: str, files: dict[str, str]) -> bytes:
    """The bytes of the part ``name``, if they hash to the digest the manifest recorded."""
    data = (folder / name).read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != files[name]:
        raise _Unusable(
            f"{name} does not match the digest its manifest recorded (expected sha256 "
            f"{files[name]}, found {found}): it was changed after the snapshot was written"
        )
    return data


def _manifest(folder: Path) -> dict[str, Any]:
    """The snapshot's manifest, whole and of this format; _Unusable says what is wrong."""
    try:
        raw = (folder / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise _Unusable(
            f"it has no {MANIFEST} (an older format, without digests of its files), so it "
            "cannot be checked"
        ) from None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise _Unusable(f"{MANIFEST} is not JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise _Unusable(f"{MANIFEST}: expected format {FORMAT}, found {found!r}")
    rest = {key: value for key, value in manifest.items() if key != "digest"}
    if manifest.get("digest") != _manifest_digest(rest):
        raise _Unusable(f"{MANIFEST} does not match its own digest: it was changed")
    files = manifest.get("files")
    well_formed = (
        set(manifest) == {"format", "size", "root", "log_bytes", "log_sha256", "files", "digest"}
        and _whole(manifest["size"])
        and _whole(manifest["log_bytes"])
        and _hex64(manifest["root"])
        and _hex64(manifest["log_sha256"])
        and isinstance(files, dict)
        and set(files) == set(PARTS)
        and all(_hex64(value) for value in files.values())
    )
    if not well_formed:
        raise _Unusable(f"{MANIFEST} is malformed")
    return manifest


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None
