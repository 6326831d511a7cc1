"""Errors raised by :mod:`ledger`.

::

    LedgerError
    ├── EncodingError          bytes that are not strict JSON (duplicate keys, NaN, bad UTF-8)
    ├── FormatError            a known object with missing, unknown or ill-typed fields
    │   └── InvalidReferenceError  an image reference outside Docker's grammar (ledger.reference)
    ├── SignatureError         an event signature that does not verify
    ├── RuleViolation          a well-formed, signed event that the rules forbid (kind, role, index)
    │   └── DuplicateResultError   a second result by one site for one task
    ├── EventTimeError         an event dated outside the registry's window of its clock (append)
    ├── UnknownTaskError       no task with this event id is in the ledger (also a LookupError)
    ├── ChainError             an entry whose index or prev hash does not continue the chain
    ├── ProofError             a Merkle inclusion or consistency proof that does not verify
    ├── CheckpointError        a checkpoint note that is malformed, unsigned or for another log
    │   └── CosignatureError   a cosignature line that is malformed, by another key or invalid
    ├── WitnessPolicyError     a witness policy (C2SP tlog-policy text) that cannot be parsed
    ├── QuorumError            a verified checkpoint its witness policy's quorum has not cosigned
    ├── StoreError             the data directory cannot be read or written
    │   └── CorruptStoreError  the data directory holds bytes that cannot be recovered
    │       └── DamagedError   stored bytes that no longer hash to what the ledger signed
    │           ├── DamagedEntryError  an entry's record, by its index (never served)
    │           └── DamagedBlobError   a blob whose bytes no longer hash to its name
    ├── BlobError              a blob whose bytes do not match its hash, or that is missing/too big
    │   └── MissingBlobError   an event names a blob the registry holds no copy of (append)
    ├── VerificationError      a whole-ledger check failed; carries the first bad entry's index
    ├── TrustAnchorError       a configured pin (log key, genesis) differs from the one kept before
    └── UntrustedLogError      a registry served something other than the history it signed
        ├── ForeignCheckpointError        a checkpoint not signed by the pinned log key for the
        │                                 ledger's origin
        ├── GenesisMismatchError          entry 0, or the log key it names, is not the pinned one
        ├── RollbackError                 a checkpoint smaller than one already trusted
        ├── SameSizeForkError             a checkpoint of a trusted size with another root
        ├── LargerForkError               a larger checkpoint whose history does not extend
        │                                 the trusted one
        ├── HistoryRewrittenError         entries that do not continue (or no longer hash to)
        │                                 the history verified before
        ├── UnsignedEntriesError          entries that do not hash to the checkpoint's root
        ├── EntriesBeyondCheckpointError  more entries served than the checkpoint covers
        ├── WithheldEntriesError          a checkpoint covering entries that are not served
        ├── ConsistencyProofError         a consistency proof that does not verify
        └── ForbiddenEntryError           an entry the chain, a signature or the rules refuse

Each :class:`UntrustedLogError` is decided by one module, :mod:`ledger.trust` (readers without the
whole tree, such as the Analyst, raise the same classes from its checks), and carries the evidence
(the last trusted checkpoint note and the one served) for the reader to keep.

Every message says what was expected and what was found, with the entry index or key id.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error raised by the ledger package."""


class EncodingError(LedgerError):
    """Input is not strict JSON, or an object cannot be canonicalized."""


class FormatError(LedgerError):
    """A known object has missing, unknown or ill-typed fields."""


class InvalidReferenceError(FormatError):
    """The text is not a valid Docker image reference (:mod:`ledger.reference`).

    A :class:`FormatError`: a ``task`` naming such an image is a malformed event, refused by the
    registry and by every reader; a site's allowlist refuses the text (it never runs).
    """


class SignatureError(LedgerError):
    """An event's signature does not verify against its author's key."""


class RuleViolation(LedgerError):
    """The authorization rules forbid this entry."""


class EventTimeError(LedgerError):
    """An event's ``time`` lies outside the registry's window around its clock.

    Checked when the registry appends the event (:class:`ledger.timewindow.TimeWindow`), never on
    replay: an entry that was fresh when received stays valid.
    """


class DuplicateResultError(RuleViolation):
    """The site already posted a result for this task (``index`` is the entry holding it)."""

    def __init__(self, message: str, *, index: int | None) -> None:
        super().__init__(message)
        self.index = index


class UnknownTaskError(LedgerError, LookupError):
    """No task with this event id is in the ledger."""


class UnknownTileError(LedgerError, LookupError):
    """The path names no C2SP tlog-tiles tile or entry bundle the ledger holds (yet)."""


class TileEntryTooLargeError(LedgerError):
    """An entry bundle cannot frame one of its entries (a uint16 length: at most 65,535 bytes).
    The bundle is never served; its entries are read as pages (``/v1/events``) instead."""


class ChainError(LedgerError):
    """The entry does not continue the hash chain (index or prev)."""


class ProofError(LedgerError):
    """A Merkle proof failed to verify or was requested for impossible sizes."""


class CheckpointError(LedgerError):
    """A checkpoint note is malformed, unsigned, or for another origin or key."""


class CosignatureError(CheckpointError):
    """A C2SP cosignature/v1 line that is malformed, from an unknown key, or does not verify."""


class WitnessPolicyError(LedgerError):
    """Witness policy text (C2SP tlog-policy) that is malformed or names unknown witnesses."""


class QuorumError(LedgerError):
    """A checkpoint that verified, but is not (yet) cosigned by the witness policy's quorum.

    Not a lie: the witnesses may simply not have cosigned yet. ``have`` and ``need`` count the
    top-level quorum's parts (``waiting for witnesses: have of need``).
    """

    def __init__(self, message: str, *, have: int = 0, need: int = 0, size: int = 0) -> None:
        super().__init__(message)
        self.have = have
        self.need = need
        self.size = size


class StoreError(LedgerError):
    """The data directory cannot be read or written."""


class BacklogError(StoreError):
    """Too many sequenced entries await a checkpoint (a shared store's integrator is behind or
    gone): the append is refused, to be tried again shortly, rather than queued without bound."""


class CorruptStoreError(StoreError):
    """The data directory holds bytes that cannot be recovered."""


class DamagedError(CorruptStoreError):
    """Stored bytes no longer hash to what the ledger signed; ``subject`` names which ("entry 7",
    "blob 3fa9..."). Damage is never served: the registry answers ``store-damaged`` instead."""

    def __init__(self, subject: str, reason: str) -> None:
        super().__init__(f"{subject}: {reason}")
        self.subject = subject
        self.reason = reason


class DamagedEntryError(DamagedError):
    """Entry ``index``'s stored record does not hold the bytes whose leaf hash the Merkle tree
    (and so the signed checkpoint) has, or its framing is broken."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"entry {index}", reason)
        self.index = index


class DamagedBlobError(DamagedError):
    """The stored blob ``sha256`` holds bytes that hash to something else."""

    def __init__(self, sha256: str, reason: str) -> None:
        super().__init__(f"blob {sha256}", reason)
        self.sha256 = sha256


class BlobError(LedgerError):
    """A blob's bytes do not match its hash, or it is missing or too large."""


class MissingBlobError(BlobError):
    """An event names a blob (task config, result output or log) that the registry does not hold.

    Checked when the registry appends the event; uploading the blob and posting the same signed
    event again succeeds.
    """


class VerificationError(LedgerError):
    """A whole-ledger verification failed at ``index`` (None when not tied to one entry)."""

    def __init__(self, index: int | None, reason: str) -> None:
        where = f"entry {index}" if index is not None else "ledger"
        super().__init__(f"{where}: {reason}")
        self.index = index
        self.reason = reason


class TrustAnchorError(LedgerError):
    """A configured trust anchor (log key, genesis hash) differs from the one pinned before."""


class UntrustedLogError(LedgerError):
    """The registry served something other than the history it signed.

    ``trusted`` is the last checkpoint note the reader had verified (empty if none), ``served``
    the note the registry served (empty if the lie came before one was fetched), ``index`` the
    entry at fault when there is one.
    """

    def __init__(
        self,
        reason: str,
        *,
        trusted: bytes = b"",
        served: bytes = b"",
        index: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.trusted = trusted
        self.served = served
        self.index = index

    def with_notes(self, *, trusted: bytes, served: bytes) -> UntrustedLogError:
        """This error with the evidence notes filled in where they were missing."""
        self.trusted = self.trusted or trusted
        self.served = self.served or served
        return self


class ForeignCheckpointError(UntrustedLogError):
    """A checkpoint that is not signed by the pinned log key, or is for another origin."""


class GenesisMismatchError(UntrustedLogError):
    """Entry 0, or the log key it names, differs from the pinned one."""


class RollbackError(UntrustedLogError):
    """A checkpoint smaller than one the reader already trusts."""


class SameSizeForkError(UntrustedLogError):
    """A checkpoint of a size already trusted, with another root."""


class LargerForkError(UntrustedLogError):
    """A larger checkpoint whose history does not extend the trusted one."""


class HistoryRewrittenError(UntrustedLogError):
    """Entries that do not continue, or no longer hash to, the history verified before."""


class UnsignedEntriesError(UntrustedLogError):
    """Entries that do not hash to the root of the checkpoint served with them."""


class EntriesBeyondCheckpointError(UntrustedLogError):
    """More entries served than the checkpoint served with them covers."""


class WithheldEntriesError(UntrustedLogError):
    """A checkpoint covering entries that the registry does not serve (or no longer holds)."""


class ConsistencyProofError(UntrustedLogError):
    """The registry's consistency proof between two checkpoints does not verify."""


class ForbiddenEntryError(UntrustedLogError):
    """An entry served under the registry's log that the chain, a signature or the rules refuse."""
