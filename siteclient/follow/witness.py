"""The site as a witness (DESIGN 12): cosign each checkpoint it verified, never two that fork.

A site whose config names a ``witness_key_file`` (its own key, not its signing key, published as
its member ``witness_key``) runs :meth:`Witness.observe` every round, before its follower reads
the cosigned checkpoint:

1. fetch the registry's newest checkpoint and verify it with the pinned log key for the origin
   (:func:`ledger.trust.verify_note`);
2. check it against the last checkpoint this witness cosigned (or, before its first cosignature,
   the one its follower trusts): not smaller, the same root at the same size, and the registry's
   consistency proof between them (:func:`ledger.trust.check_consistency`). Witnesses, like the
   C2SP ones, check the proof, not the entries: the follower checks those against the checkpoint
   it then commits;
3. sign a C2SP cosignature/v1 line and write it, with the checkpoint, to ``witness.json``
   (atomically, fsync'd) *before* it leaves the site;
4. send it with a signed request (``POST /v1/cosignatures``): the site only sends, so a site with
   no inbound port witnesses too. A line written but not sent (a crash, the network) is sent
   again at the next round; it is the same line, so the registry records it once.

A checkpoint inconsistent with the one cosigned is never cosigned: the witness keeps both as
evidence and raises :class:`~siteclient.errors.ForkDetectedError` (the site stops, exit 3). Since
step 3 happens before step 4, a witness killed anywhere never cosigns two inconsistent
checkpoints after it restarts: what it may have sent is on its disk, and it checks against that.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from api.errors import ApiError
from crypto import SigningKey
from ledger.checkpoint import Checkpoint
from ledger.cosignature import cosign
from ledger.errors import StoreError, UntrustedLogError
from ledger.store.durable import write_atomic
from ledger.trust import check_consistency, verify_note
from siteclient.errors import ForkDetectedError, StateError
from siteclient.follow.state import TrustStore

log = logging.getLogger(__name__)

WITNESS_FILE = "witness.json"


class WitnessClient(Protocol):
    def checkpoint(self) -> bytes: ...
    def consistency_proof(self, old: int, new: int) -> list[bytes]: ...
    def post_cosignature(self, size: int, line: str) -> bool: ...


class Witness:
    """One site's witness: its key, its durable memory and the registry it cosigns for."""

    def __init__(
        self,
        client: WitnessClient,
        key: SigningKey,
        *,
        name: str,
        store: TrustStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._key = key
        self._name = name
        self._store = store
        self._path = store.dir / WITNESS_FILE
        self._clock = clock
        self._last_time = 0
        self._memory = self._load()

    def _load(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(self._path.read_bytes())
            doc["note"].encode()
            return doc
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise StateError(f"cannot read the witness state {self._path}: {exc}") from exc

    @property
    def cosigned_size(self) -> int | None:
        """The size of the last checkpoint this witness cosigned (None: none yet)."""
        return None if self._memory is None else int(self._memory["size"])

    def observe(
        self, *, log_key: str, origin: str, trusted: Checkpoint | None = None
    ) -> Checkpoint | None:
        """One round (see the module): returns the checkpoint cosigned now, or None when there
        was nothing new to cosign. Raises :class:`ForkDetectedError` on a fork (evidence kept)."""
        note = self._client.checkpoint()
        try:
            checkpoint = verify_note(note, log_key=log_key, origin=origin)
            cosigned = self._base(log_key, origin)
            if cosigned is not None and cosigned.size == checkpoint.size:
                check_consistency(cosigned, checkpoint)
                if self._memory is not None and not self._memory.get("sent", True):
                    self._send()
                return None
            base = cosigned or trusted
            if base is not None:
                proof = (
                    self._client.consistency_proof(base.size, checkpoint.size)
                    if 0 < base.size < checkpoint.size
                    else None
                )
                check_consistency(base, checkpoint, proof)
        except UntrustedLogError as exc:
            self._refuse(exc, note)
        self._decide(note, checkpoint)
        self._send()
        return checkpoint

    def _base(self, log_key: str, origin: str) -> Checkpoint | None:
        if self._memory is None:
            return None
        try:
            return verify_note(self._memory["note"].encode(), log_key=log_key, origin=origin)
        except UntrustedLogError as exc:
            raise StateError(
                f"the witness's own cosigned checkpoint does not verify: {exc}"
            ) from exc

    def _decide(self, note: bytes, checkpoint: Checkpoint) -> None:
        """Sign, then keep the decision durably: it is on disk before it can leave."""
        now = max(int(self._clock()), self._last_time)
        self._last_time = now
        line = cosign(checkpoint, self._key, name=self._name, time=now)
        memory = {"size": checkpoint.size, "note": note.decode(), "line": line, "sent": False}
        self._write(memory)
        self._memory = memory

    def _send(self) -> None:
        memory = self._memory
        assert memory is not None
        try:
            self._client.post_cosignature(int(memory["size"]), memory["line"])
        except ApiError as exc:  # refused or unreachable: kept, sent again next round
            log.warning("witness: the registry did not take the cosignature: %s", exc)
            return
        memory["sent"] = True
        self._write(memory)

    def _write(self, memory: dict[str, Any]) -> None:
        try:
            write_atomic(self._path, json.dumps(memory, sort_keys=True).encode())
        except StoreError as exc:
            raise StateError(f"cannot save the witness state: {exc}") from exc

    def _refuse(self, exc: UntrustedLogError, note: bytes) -> None:
        trusted = self._memory["note"].encode() if self._memory is not None else b""
        exc.with_notes(trusted=trusted, served=note)
        folder = self._store.keep_evidence(exc, name=f"witness-{type(exc).__name__}")
        raise ForkDetectedError(
            f"the witness refuses to cosign ({type(exc).__name__}): {exc}; evidence kept in "
            f"{folder}"
        ) from exc
