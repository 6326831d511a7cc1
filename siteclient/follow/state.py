"""What a follower has verified so far (:class:`ledger.trust.Trusted`), persisted in its state
directory.

Files (``state_dir``)::

    trusted.json     {"size", "checkpoint" (the last verified note), "log_key", "genesis",
                      "state" (the replayed ledger.state.State)}; replaced atomically
    leaves.bin       the Merkle leaf hashes of every verified entry (32 bytes each), append-only;
                     cut back to ``size`` on load, since it may run ahead of trusted.json
    evidence/        one folder per lie caught: the checkpoints that contradict each other
    revoked.json     {"index"}: the registry served this site's revocation at that entry and
                     then refused the site's key (so it can never be verified); a restart that
                     meets the same refusal names the entry again

The cursor is ``size``: everything below it was verified against a signed checkpoint and folded
into ``state``. Writing ``trusted.json`` last makes the cursor, the checkpoint and the state move
together: a crash in between leaves the previous, consistent triple.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from api.client.evidence import keep_evidence
from ledger.errors import UntrustedLogError
from ledger.merkle import MerkleTree
from ledger.state import State
from ledger.store.durable import write_atomic
from ledger.trust import Trusted
from siteclient.errors import StateError

TRUSTED = "trusted.json"
LEAVES = "leaves.bin"
REVOKED = "revoked.json"


class TrustStore:
    """Loads and saves :class:`Trusted` in ``state_dir``."""

    def __init__(self, state_dir: Path, *, exclusive: bool = False) -> None:
        """``exclusive`` locks the directory for this process (the follower): two site clients
        of one site must never run together."""
        self.dir = Path(state_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"cannot create state directory {self.dir}: {exc.strerror}") from exc
        self._saved_leaves = 0
        self._lock_fd: int | None = None
        if exclusive:
            fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StateError(
                    f"another site client is running on {self.dir} (it holds {self.dir / 'LOCK'})"
                ) from None
            self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> Trusted:
        path = self.dir / TRUSTED
        if not path.exists():
            (self.dir / LEAVES).write_bytes(b"")
            self._saved_leaves = 0
            return Trusted()
        try:
            doc: dict[str, Any] = json.loads(path.read_bytes())
            state = State.from_dict(doc["state"])
            leaves = (self.dir / LEAVES).read_bytes()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateError(f"cannot read the site's trusted state in {self.dir}: {exc}") from exc
        need = state.size * 32
        if len(leaves) < need:
            raise StateError(
                f"{LEAVES} holds {len(leaves) // 32} leaves, {TRUSTED} says {state.size}"
            )
        tree = MerkleTree.from_leaf_hashes(leaves[:need])
        self._saved_leaves = state.size
        return Trusted(
            log_key=doc.get("log_key"),
            genesis=doc.get("genesis"),
            checkpoint=doc["checkpoint"].encode(),
            state=state,
            tree=tree,
        )

    def save(self, trusted: Trusted) -> None:
        """Persist ``trusted``: leaves first (fsynced), then the small file that points at them."""
        try:
            with open(self.dir / LEAVES, "r+b") as handle:
                handle.truncate(self._saved_leaves * 32)
                handle.seek(self._saved_leaves * 32)
                for index in range(self._saved_leaves, trusted.tree.size):
                    handle.write(trusted.tree.leaf(index))
                handle.flush()
                os.fsync(handle.fileno())
            doc = {
                "size": trusted.size,
                "log_key": trusted.log_key,
                "genesis": trusted.genesis,
                "checkpoint": trusted.checkpoint.decode(),
                "state": trusted.state.to_dict(),
            }
            write_atomic(self.dir / TRUSTED, json.dumps(doc, separators=(",", ":")).encode())
        except OSError as exc:
            raise StateError(f"cannot save the site's trusted state: {exc.strerror}") from exc
        self._saved_leaves = trusted.tree.size

    def mark_revoked(self, index: int) -> None:
        """Remember that the registry served this site's revocation at entry ``index``."""
        try:
            write_atomic(self.dir / REVOKED, json.dumps({"index": index}).encode())
        except OSError as exc:
            raise StateError(f"cannot save {REVOKED} in {self.dir}: {exc.strerror}") from exc

    def revoked_at(self) -> int | None:
        """The entry :meth:`mark_revoked` remembered, if any."""
        try:
            index = json.loads((self.dir / REVOKED).read_bytes())["index"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return index if isinstance(index, int) and not isinstance(index, bool) else None

    def keep_evidence(self, lie: UntrustedLogError, *, name: str, entry: bytes = b"") -> Path:
        """Keep what proves a registry lied in a new folder under ``evidence/``
        (:func:`api.client.evidence.keep_evidence`); return the folder."""
        try:
            return keep_evidence(self.dir / "evidence", lie, name=name, entry=entry)
        except OSError as exc:
            raise StateError(f"cannot keep the evidence in {self.dir}: {exc}") from exc
