"""The trust core: is what a registry serves the history it signed?

Pure: bytes and values in, a verified value out, or one named :class:`UntrustedLogError`. The
site's follower, the FileService's view, ``pht audit``, the Analyst and the registry's own
recovery all decide here, so each way a registry can lie is caught in one place and ends the same
way in every reader (the tree of lies is drawn in :mod:`ledger.errors`).

Three checks, each a function:

- :func:`verify_note`: the checkpoint is signed by the pinned log key for the ledger's origin.
- :func:`check_consistency`: a new checkpoint against the last trusted one (no rollback, no
  same-size fork, and the registry's consistency proof, when the reader has one).
- :func:`check_checkpoint`: a verified tree against a new checkpoint (the entries hash to its
  root; none withheld, none beyond it), after :func:`check_consistency`.

:class:`TrustedLog` is a follower's state machine over them, in the order a careful follower
takes (python-tuf's trusted set is the model): ``stage(entries)`` folds entries into the working
state with the rules; ``commit(note, proof)`` verifies the checkpoint that covers them and only
then publishes a new immutable :class:`~ledger.view.View`. With a witness policy in force (the
one in the state as staged, so the checkpoint that first covers a policy already needs its
quorum; DESIGN 12), ``commit`` also demands that the note carry cosignatures meeting the quorum,
else it raises :class:`~ledger.errors.QuorumError` (not a lie: the reader waits for witnesses,
reopens and tries again). With no policy, behaviour is as before. Readers only ever see views. A
TrustedLog that raised is spent: whatever it had staged is thrown away with it, and its owner
reopens one from the last saved :class:`Trusted`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from ledger.checkpoint import Checkpoint, parse_verifier_key, verify_checkpoint
from ledger.errors import (
    ChainError,
    CheckpointError,
    ConsistencyProofError,
    CorruptStoreError,
    EntriesBeyondCheckpointError,
    ForbiddenEntryError,
    ForeignCheckpointError,
    GenesisMismatchError,
    HistoryRewrittenError,
    LargerForkError,
    LedgerError,
    ProofError,
    QuorumError,
    RollbackError,
    SameSizeForkError,
    TrustAnchorError,
    UnsignedEntriesError,
    UntrustedLogError,
    WithheldEntriesError,
)
from ledger.events import Entry
from ledger.merkle import MerkleTree, verify_consistency
from ledger.rules import apply
from ledger.state import State
from ledger.view import View
from ledger.witness_policy import cosigners, require_quorum
from ledger.witness_rules import policy_of

log = logging.getLogger(__name__)


def verify_note(note: bytes, *, log_key: str, origin: str) -> Checkpoint:
    """The checkpoint in ``note`` if it is signed by ``log_key`` for ``origin``.

    Raises :class:`ForeignCheckpointError` (another key, another origin, or not a signed note).
    """
    try:
        return verify_checkpoint(note, parse_verifier_key(log_key), origin=origin)
    except CheckpointError as exc:
        raise ForeignCheckpointError(
            f"the checkpoint is not signed by the pinned log key for {origin!r}: {exc}",
            served=note,
        ) from exc


def check_consistency(
    trusted: Checkpoint, new: Checkpoint, proof: Sequence[bytes] | None = None
) -> None:
    """``new`` extends ``trusted``: not smaller, the same root at the same size, and (when the
    reader is given a ``proof``, as readers without the whole tree are) a consistency proof that
    verifies.

    Raises :class:`RollbackError`, :class:`SameSizeForkError` or
    :class:`ConsistencyProofError`.
    """
    if new.size < trusted.size:
        raise RollbackError(
            f"the checkpoint went back from size {trusted.size} to {new.size}: the registry "
            "dropped entries it had signed"
        )
    if new.size == trusted.size:
        if new.root != trusted.root:
            raise SameSizeForkError(
                f"two checkpoints of size {new.size} with different roots: "
                f"{trusted.root.hex()[:16]} trusted, {new.root.hex()[:16]} served"
            )
        return
    if proof is None or trusted.size == 0:
        return
    try:
        verify_consistency(trusted.size, new.size, trusted.root, new.root, proof)
    except ProofError as exc:
        raise ConsistencyProofError(
            f"the registry's consistency proof from size {trusted.size} to {new.size} fails: {exc}"
        ) from exc


def check_checkpoint(
    new: Checkpoint,
    tree: MerkleTree,
    *,
    trusted: Checkpoint | None = None,
    proof: Sequence[bytes] | None = None,
    exact: bool = True,
) -> None:
    """The verified ``tree`` is the history ``new`` signs, and that history extends ``trusted``.

    ``exact`` demands that the tree holds exactly ``new.size`` entries (a follower that fetched
    up to the checkpoint); without it the tree may have grown since (a data directory whose
    stored checkpoint is older than its log). Raises :class:`RollbackError`,
    :class:`SameSizeForkError`, :class:`ConsistencyProofError`, :class:`LargerForkError`,
    :class:`HistoryRewrittenError`, :class:`UnsignedEntriesError`,
    :class:`WithheldEntriesError` or :class:`EntriesBeyondCheckpointError`.
    """
    if trusted is not None:
        check_consistency(trusted, new, None)
        if trusted.size <= tree.size and tree.root(trusted.size) != trusted.root:
            raise HistoryRewrittenError(
                f"the history up to size {trusted.size} no longer hashes to the checkpoint "
                "trusted for it"
            )
    if new.size > tree.size:
        raise WithheldEntriesError(
            f"the checkpoint covers {new.size} entries but only {tree.size} are served"
        )
    if exact and tree.size > new.size:
        raise EntriesBeyondCheckpointError(
            f"{tree.size} entries served, but the checkpoint served with them covers only "
            f"{new.size}"
        )
    if tree.root(new.size) != new.root:
        if trusted is not None and new.size > trusted.size:
            raise LargerForkError(
                f"the checkpoint of size {new.size} does not sign the history trusted at size "
                f"{trusted.size} followed by the entries served"
            )
        if new.size < tree.size:
            raise HistoryRewrittenError(
                f"the history up to size {new.size} differs from the checkpoint signed for it"
            )
        raise UnsignedEntriesError(
            f"the {new.size} entries served do not hash to the checkpoint's root"
        )
    if trusted is not None and proof is not None:
        check_consistency(trusted, new, proof)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pins:
    """Trust anchors from the reader's configuration; None means trust on first use."""

    log_key: str | None = None
    genesis: str | None = None


@dataclass(slots=True, kw_only=True)
class Trusted:
    """What a reader has verified so far (its persisted form; owned by one TrustedLog)."""

    log_key: str | None = None
    genesis: str | None = None
    checkpoint: bytes = b""  # the last verified checkpoint note
    state: State = field(default_factory=State)
    tree: MerkleTree = field(default_factory=MerkleTree)

    @property
    def size(self) -> int:
        return self.state.size


class TrustedLog:
    """Stage entries, commit them under a verified checkpoint, publish immutable views."""

    def __init__(self, trusted: Trusted, *, pins: Pins = Pins()) -> None:
        """Take over ``trusted`` (loaded from disk, or new). Raises :class:`TrustAnchorError`
        when a pin differs from the anchor kept before, :class:`CorruptStoreError` when the
        saved state does not match its own saved checkpoint."""
        if pins.log_key and trusted.log_key and pins.log_key != trusted.log_key:
            raise TrustAnchorError(
                "the configured log_key differs from the one this reader pinned before"
            )
        if pins.genesis and trusted.genesis and pins.genesis != trusted.genesis:
            raise TrustAnchorError(
                "the configured genesis differs from the one this reader pinned before"
            )
        self._trusted = trusted
        self._pins = pins
        self._fresh: list[Entry] = []
        self._spent: LedgerError | None = None
        self._checkpoint: Checkpoint | None = None
        self._view: View | None = None
        if trusted.checkpoint and trusted.log_key:
            self._checkpoint = verify_note(
                trusted.checkpoint, log_key=trusted.log_key, origin=trusted.state.origin
            )
            size = self._checkpoint.size
            if not (
                trusted.state.size == trusted.tree.size == size
                and trusted.tree.root(size) == self._checkpoint.root
            ):
                # The reader's own disk, not the registry: never reported as a lie.
                raise CorruptStoreError(
                    f"the saved state ({trusted.state.size} entries, {trusted.tree.size} "
                    f"leaves) does not match the saved checkpoint (size {size})"
                )
            self._view = View.of(
                trusted.state,
                trusted.tree,
                genesis=trusted.genesis or "",
                note=trusted.checkpoint,
                checkpoint=self._checkpoint,
                cosigners=self._cosigners(trusted.checkpoint, self._checkpoint),
            )

    def _cosigners(self, note: bytes, checkpoint: Checkpoint) -> frozenset[str]:
        policy = policy_of(self._trusted.state)
        return frozenset() if policy is None else cosigners(note, checkpoint, policy)

    @property
    def trusted(self) -> Trusted:
        """The committed state, for saving (only between a commit and the next stage)."""
        return self._trusted

    @property
    def view(self) -> View | None:
        """The latest published view (None before the first commit)."""
        return self._view

    @property
    def size(self) -> int:
        """Entries covered by the last verified checkpoint."""
        return self._view.size if self._view is not None else 0

    @property
    def staged_size(self) -> int:
        return self._trusted.tree.size

    def stage(self, entries: Iterable[Entry]) -> None:
        """Fold ``entries`` (the next ones after what is staged) into the working state.

        Raises :class:`HistoryRewrittenError` (an entry that does not continue the verified
        chain), :class:`ForbiddenEntryError` (a signature or rule refuses it) or
        :class:`GenesisMismatchError`; the TrustedLog is then spent.
        """
        self._usable()
        trusted = self._trusted
        for entry in entries:
            try:
                apply(trusted.state, entry)
            except ChainError as exc:
                self._spend(HistoryRewrittenError(f"{exc}", index=entry.index))
            except LedgerError as exc:
                self._spend(ForbiddenEntryError(f"{exc}", index=entry.index))
            if entry.index == 0:
                self._pin_genesis(entry)
            trusted.tree.append(entry.leaf_hash)
            self._fresh.append(entry)

    def verify_note(self, note: bytes) -> Checkpoint:
        """The checkpoint in ``note``, signed with the pinned log key (see :func:`verify_note`)."""
        self._usable()
        trusted = self._trusted
        if trusted.log_key is None:
            self._spend(WithheldEntriesError("the registry serves no genesis entry", served=note))
        try:
            return verify_note(note, log_key=trusted.log_key, origin=trusted.state.origin)
        except UntrustedLogError as exc:
            self._spend(exc)

    def reject(self, exc: UntrustedLogError) -> NoReturn:
        """Spend this log on a lie its reader found in what it fetched before staging it (an
        entry bundle that does not hash to the checkpoint, :mod:`ledger.tileread`): nothing
        staged is kept, and ``exc`` is raised with the last trusted checkpoint as evidence."""
        self._usable()
        self._spend(exc)

    def consistency_span(self, checkpoint: Checkpoint) -> tuple[int, int] | None:
        """The sizes of the consistency proof :meth:`commit` needs for ``checkpoint``."""
        old = self._checkpoint
        if old is None or not 0 < old.size < checkpoint.size:
            return None
        return old.size, checkpoint.size

    def commit(self, note: bytes, proof: Sequence[bytes] | None = None) -> View:
        """Verify ``note`` against everything staged and the last trusted checkpoint, then
        publish and return the new view. ``proof`` is the registry's consistency proof for
        :meth:`consistency_span` (required when the span is not None).

        Raises one :class:`UntrustedLogError` (see :func:`check_checkpoint`); the TrustedLog is
        then spent.
        """
        checkpoint = self.verify_note(note)
        trusted = self._trusted
        previous = self._checkpoint
        if self.consistency_span(checkpoint) is not None and proof is None:
            raise ValueError("commit needs the consistency proof for consistency_span()")
        try:
            check_checkpoint(checkpoint, trusted.tree, trusted=previous, proof=proof)
        except UntrustedLogError as exc:
            self._spend(exc.with_notes(trusted=trusted.checkpoint, served=note))
        names: frozenset[str] = frozenset()
        policy = policy_of(trusted.state)
        if policy is not None:
            try:
                names = require_quorum(note, checkpoint, policy)
            except QuorumError as exc:
                self._spent = exc  # what was staged waits for a cosigned checkpoint
                raise
        fresh = tuple(self._fresh)
        trusted.checkpoint = note
        self._checkpoint = checkpoint
        self._fresh = []
        if self._view is None:
            view = View.of(
                trusted.state,
                trusted.tree,
                genesis=trusted.genesis or "",
                note=note,
                checkpoint=checkpoint,
                fresh=fresh,
                cosigners=names,
            )
        else:
            view = self._view.advanced(
                trusted.state,
                trusted.tree,
                note=note,
                checkpoint=checkpoint,
                fresh=fresh,
                cosigners=names,
            )
        self._view = view
        return view

    def _pin_genesis(self, entry: Entry) -> None:
        trusted, pins = self._trusted, self._pins
        if pins.genesis is not None and entry.hash != pins.genesis:
            self._spend(
                GenesisMismatchError(
                    f"the genesis entry hash is {entry.hash}, the reader pins {pins.genesis}",
                    index=0,
                )
            )
        if trusted.genesis is not None and entry.hash != trusted.genesis:
            self._spend(
                GenesisMismatchError(
                    f"the genesis entry hash is {entry.hash}, {trusted.genesis} was pinned",
                    index=0,
                )
            )
        log_key = trusted.state.log_key
        pinned_key = pins.log_key or trusted.log_key
        if pinned_key is not None and log_key != pinned_key:
            self._spend(
                GenesisMismatchError(
                    f"the genesis names log key {log_key!r}, the reader pins {pinned_key!r}",
                    index=0,
                )
            )
        if pins.genesis is None and trusted.genesis is None:
            log.warning(
                "TRUST ON FIRST USE: pinning genesis %s of ledger %r; pin it in the "
                "configuration to check it explicitly",
                entry.hash,
                trusted.state.origin,
            )
        if pinned_key is None:
            log.warning("TRUST ON FIRST USE: pinning the registry log key %s", log_key)
        trusted.genesis = entry.hash
        trusted.log_key = log_key

    def _usable(self) -> None:
        if self._spent is not None:  # a caller's bug, not a registry's lie
            raise RuntimeError(
                f"this trusted log is spent (it caught: {self._spent}); reopen it from its "
                "last saved state"
            )

    def _spend(self, exc: UntrustedLogError) -> NoReturn:  # a lie: evidence attached
        exc.with_notes(trusted=self._trusted.checkpoint, served=b"")
        self._spent = exc
        raise exc
