"""Errors raised by :mod:`ledger`.

::

    LedgerError
    ├── EncodingError          bytes that are not strict JSON (duplicate keys, NaN, bad UTF-8)
    ├── FormatError            a known object with missing, unknown or ill-typed fields
    ├── SignatureError         an event signature that does not verify
    ├── RuleViolation          a well-formed, signed event that the rules forbid (kind, role, index)
    ├── ChainError             an entry whose index or prev hash does not continue the chain
    ├── ProofError             a Merkle inclusion or consistency proof that does not verify
    ├── CheckpointError        a checkpoint note that is malformed, unsigned or for another log
    ├── StoreError             the data directory cannot be read or written
    │   └── CorruptStoreError  the data directory holds bytes that cannot be recovered
    ├── BlobError              a blob whose bytes do not match its hash, or that is missing/too big
    └── VerificationError      a whole-ledger check failed; carries the first bad entry's index

Every message says what was expected and what was found, with the entry index or key id.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error raised by the ledger package."""


class EncodingError(LedgerError):
    """Input is not strict JSON, or an object cannot be canonicalized."""


class FormatError(LedgerError):
    """A known object has missing, unknown or ill-typed fields."""


class SignatureError(LedgerError):
    """An event's signature does not verify against its author's key."""


class RuleViolation(LedgerError):
    """The authorization rules forbid this entry."""


class ChainError(LedgerError):
    """The entry does not continue the hash chain (index or prev)."""


class ProofError(LedgerError):
    """A Merkle proof failed to verify or was requested for impossible sizes."""


class CheckpointError(LedgerError):
    """A checkpoint note is malformed, unsigned, or for another origin or key."""


class StoreError(LedgerError):
    """The data directory cannot be read or written."""


class CorruptStoreError(StoreError):
    """The data directory holds bytes that cannot be recovered."""


class BlobError(LedgerError):
    """A blob's bytes do not match its hash, or it is missing or too large."""


class VerificationError(LedgerError):
    """A whole-ledger verification failed at ``index`` (None when not tied to one entry)."""

    def __init__(self, index: int | None, reason: str) -> None:
        where = f"entry {index}" if index is not None else "ledger"
        super().__init__(f"{where}: {reason}")
        self.index = index
        self.reason = reason
