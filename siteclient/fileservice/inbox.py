"""The FileService's inbox: files members sent this site directly, keyed by (task, sha256).

Layout under the inbox directory (created 0700)::

    <task>/ab/cdef...            the bytes received (ciphertext, as sent): one BlobStore per task
    <task>/tmp/                  uploads in progress
    <task>/meta/<sha256>.json    the receipt: sender, name, size, received, the transfer event

Invariants:

- Only a task id and a sha256, each exactly 64 lowercase hex digits, ever name a directory or a
  file. The name a sender gives a file is metadata in the receipt and nothing else.
- Bytes at their path are whole, synced and hash-checked (:class:`ledger.store.blobs.BlobStore`:
  temp
  file, fsync, rename). The receipt is written after them, atomically.
- A receipt holds the signed ``transfer`` event it records. It is *pending* until the registry
  has appended that event and *recorded* once it holds the entry's index. Posting the same signed
  event again is idempotent, so finishing a pending receipt (a retried upload, or the service's
  start) never records a transfer twice.
- :func:`received_files` lists recorded receipts only, in ledger order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from ledger.events import SignedEvent
from ledger.store.blobs import BlobStore, check_name
from ledger.store.durable import write_atomic
from siteclient.errors import StateError

META = "meta"


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxEntry:
    """The receipt of one received file."""

    task: str
    sha256: str
    size: int
    sender: str
    name: str | None
    received: str
    transfer: SignedEvent
    transfer_index: int | None = None  # None while the transfer is not yet in the ledger

    @property
    def recorded(self) -> bool:
        return self.transfer_index is not None

    def to_json(self) -> bytes:
        data = {
            "v": 1,
            "task": self.task,
            "sha256": self.sha256,
            "size": self.size,
            "sender": self.sender,
            "name": self.name,
            "received": self.received,
            "transfer": self.transfer.to_dict(),
            "transfer_index": self.transfer_index,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: Path) -> InboxEntry:
        """Parse a receipt; raise :class:`StateError` naming the file if it is malformed."""
        try:
            data = json.loads(raw)
            entry = cls(
                task=check_name(data["task"]),
                sha256=check_name(data["sha256"]),
                size=_int(data["size"]),
                sender=_str(data["sender"]),
                name=None if data["name"] is None else _str(data["name"]),
                received=_str(data["received"]),
                transfer=SignedEvent.from_dict(data["transfer"]),
                transfer_index=None
                if data["transfer_index"] is None
                else _int(data["transfer_index"]),
            )
        except (ValueError, KeyError, TypeError, LedgerError) as exc:
            raise StateError(f"inbox receipt {where} is malformed: {exc}") from exc
        if data.get("v") != 1:
            raise StateError(f"inbox receipt {where}: expected version 1, found {data.get('v')!r}")
        return entry


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedFile:
    """A file received for a task and recorded in the ledger (what an executor reads)."""

    sender: str
    name: str | None  # the sender's output name, if it gave one (validated, metadata only)
    sha256: str
    size: int
    path: Path  # the bytes as received (ciphertext when the sender encrypted them)
    transfer_index: int


class Inbox:
    """The inbox directory of one FileService."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self._root = Path(root)
        if not create:
            return
        try:
            self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"cannot create inbox {self._root}: {exc.strerror}") from exc

    @property
    def root(self) -> Path:
        return self._root

    def blobs(self, task: str) -> BlobStore:
        """The byte store of ``task`` (created on first use)."""
        try:
            return BlobStore(self._root / check_name(task))
        except LedgerError as exc:
            raise StateError(str(exc)) from exc

    def path(self, task: str, sha256: str) -> Path:
        """Where the bytes of (task, sha256) live, whether or not they exist."""
        name = check_name(sha256)
        return self._root / check_name(task) / name[:2] / name[2:]

    def _meta(self, task: str, sha256: str) -> Path:
        return self._root / check_name(task) / META / f"{check_name(sha256)}.json"

    def find(self, task: str, sha256: str) -> InboxEntry | None:
        """The receipt of (task, sha256), or None if nothing was received."""
        path = self._meta(task, sha256)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read inbox receipt {path}: {exc.strerror}") from exc
        return InboxEntry.from_json(raw, path)

    def save(self, entry: InboxEntry) -> None:
        """Write ``entry``'s receipt atomically. Raises :class:`StateError`."""
        path = self._meta(entry.task, entry.sha256)
        try:
            path.parent.mkdir(exist_ok=True, mode=0o700)
            write_atomic(path, entry.to_json())
        except (OSError, LedgerError) as exc:
            raise StateError(f"cannot write inbox receipt {path}: {exc}") from exc

    def discard(self, task: str, sha256: str) -> None:
        """Remove the bytes and receipt of (task, sha256); used only before a transfer exists."""
        self._meta(task, sha256).unlink(missing_ok=True)
        self.path(task, sha256).unlink(missing_ok=True)

    def entries(self, task: str) -> list[InboxEntry]:
        """Every receipt of ``task`` (pending and recorded), by sha256."""
        folder = self._root / check_name(task) / META
        if not folder.is_dir():
            return []
        found = []
        for item in sorted(folder.iterdir()):
            stem = item.name.removesuffix(".json")
            if item.name.endswith(".json") and len(stem) == 64 and not item.name.startswith("."):
                entry = self.find(task, stem)
                if entry is not None:
                    found.append(entry)
        return found

    def tasks(self) -> list[str]:
        """The tasks something was received for."""
        if not self._root.is_dir():
            return []
        names = (item.name for item in self._root.iterdir() if item.is_dir())
        return sorted(name for name in names if len(name) == 64 and _is_hex(name))

    def pending(self) -> list[InboxEntry]:
        """Receipts whose transfer event is not yet known to be in the ledger."""
        return [e for task in self.tasks() for e in self.entries(task) if not e.recorded]

    def clean_tmp(self) -> int:
        """Remove uploads a crash left half-written (at start, before serving); return how many."""
        return sum(self.blobs(task).clean_tmp() for task in self.tasks())


def received_files(inbox: Path | Inbox, task: str) -> list[ReceivedFile]:
    """The files received for ``task`` whose transfer is recorded in the ledger, in ledger order.

    A file whose bytes are missing or have another size than its receipt says is left out (and
    the inconsistency is the operator's to investigate); the bytes are not re-hashed here: the
    age decryption that follows authenticates every chunk. Raises :class:`StateError` for an
    unreadable inbox or receipt.
    """
    try:
        check_name(task)
    except LedgerError as exc:
        raise StateError(f"received_files: the task id is wrong: {exc}") from exc
    box = inbox if isinstance(inbox, Inbox) else Inbox(inbox, create=False)
    files = []
    for entry in box.entries(task):
        path = box.path(entry.task, entry.sha256)
        if entry.transfer_index is None or not _has_size(path, entry.size):
            continue
        files.append(
            ReceivedFile(
                sender=entry.sender,
                name=entry.name,
                sha256=entry.sha256,
                size=entry.size,
                path=path,
                transfer_index=entry.transfer_index,
            )
        )
    return sorted(files, key=lambda f: f.transfer_index)


def _has_size(path: Path, size: int) -> bool:
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a non-negative integer, found {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, found {value!r}")
    return value
