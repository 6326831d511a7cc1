"""The ledger: the single write path and the read side of one data directory.

``Ledger.append`` is the only way an entry is written: parse (done by the caller), check the
signature, apply the rules, append durably (group commit: many concurrent appends share one
fsync), then sign a new checkpoint. An append returns only after its entry is durable.

Data directory::

    LOCK            exclusive lock: one registry process per data directory
    entries.log     the append-only entry log (see ledger.store.entries)
    entries.idx     offsets into it; rebuildable
    objects/        content-addressed blobs
    checkpoint      the latest signed checkpoint note, replaced atomically
    SNAPSHOT, snapshots/   derived state, Merkle levels and event ids (see ledger.store.snapshot)

Opening recovers: the store cuts a torn tail; the snapshot is loaded; every entry after it is
re-checked against the chain and the rules (their signatures were checked when they were
appended, and every record carries a checksum; ``pht audit`` re-verifies everything); the stored
checkpoint must be a prefix of the recovered tree (else acknowledged entries were lost, which is
reported loudly); then a fresh checkpoint is signed for the recovered size.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto import KeyId, SigningKey
from ledger import fields as f
from ledger.checkpoint import Checkpoint, parse_verifier_key, sign_checkpoint, verify_checkpoint
from ledger.errors import (
    CheckpointError,
    CorruptStoreError,
    LedgerError,
    ProofError,
    SignatureError,
    StoreError,
)
from ledger.events import Entry, SignedEvent, utc_now
from ledger.merkle import MerkleTree
from ledger.rules import apply, check_event_signature
from ledger.state import MemberRecord, State, TaskRecord
from ledger.store.blobs import BlobStore
from ledger.store.durable import write_atomic
from ledger.store.entries import EntryStore
from ledger.store.groupcommit import GroupCommitter
from ledger.store.idindex import IdIndex
from ledger.store.snapshot import read_snapshot, write_snapshot

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 50_000
CHECKPOINT_FILE = "checkpoint"


class UnknownTaskError(LedgerError, LookupError):
    """No task with this event id is in the ledger."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    entry: Entry
    created: bool  # False when the same signed event was already in the ledger


class Ledger:
    """One open data directory. Thread-safe; one process per directory (the store locks it)."""

    def __init__(
        self,
        data_dir: Path,
        store: EntryStore,
        *,
        log_key: SigningKey,
        clock: Callable[[], str],
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> None:
        self.data_dir = data_dir
        self.blobs = BlobStore(data_dir / "objects")
        self._store = store
        self._log_key = log_key
        self._clock = clock
        self._snapshot_every = snapshot_every
        self._lock = threading.Lock()  # guards state, tree, ids and the checkpoint
        self._grown = threading.Condition(self._lock)
        self._state = State()
        self._tree = MerkleTree()
        self._ids = IdIndex()
        self._snapshot_size = 0
        self._checkpoint = b""
        self._recover()
        self._committer: GroupCommitter[SignedEvent, AppendResult | LedgerError] = GroupCommitter(
            self._commit
        )

    # ---- opening

    @classmethod
    def create(
        cls,
        data_dir: Path,
        *,
        genesis: SignedEvent,
        log_key: SigningKey,
        clock: Callable[[], str] = utc_now,
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> Ledger:
        """Create a new ledger whose entry 0 is ``genesis``; refuse an existing one."""
        data_dir = Path(data_dir)
        if (data_dir / "entries.log").exists():
            raise StoreError(f"{data_dir} already holds a ledger; refusing to overwrite it")
        data_dir.mkdir(parents=True, exist_ok=True)
        ledger = cls(
            data_dir,
            EntryStore.open(data_dir),
            log_key=log_key,
            clock=clock,
            snapshot_every=snapshot_every,
        )
        try:
            ledger.append(genesis)
        except BaseException:
            ledger.close()
            raise
        return ledger

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        log_key: SigningKey,
        clock: Callable[[], str] = utc_now,
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> Ledger:
        data_dir = Path(data_dir)
        if not (data_dir / "entries.log").exists():
            raise StoreError(f"{data_dir} holds no ledger (run `pht init` first)")
        store = EntryStore.open(data_dir)
        return cls(data_dir, store, log_key=log_key, clock=clock, snapshot_every=snapshot_every)

    def _recover(self) -> None:
        snapshot = read_snapshot(self.data_dir)
        count = self._store.count
        if snapshot is not None and snapshot.size <= count:
            self._state, self._tree = snapshot.state, snapshot.tree
            self._ids = snapshot.ids
            self._snapshot_size = snapshot.size
        elif snapshot is not None:
            raise CorruptStoreError(
                f"the snapshot covers {snapshot.size} entries but the log holds only {count}: "
                "acknowledged entries are missing"
            )
        start = self._state.size
        if start < count:
            log.info("re-checking %d entries written after the last snapshot", count - start)
        for first in range(start, count, 4096):
            for data in self._store.read_range(first, min(count, first + 4096)):
                try:
                    entry = Entry.from_canonical(data)
                    apply(self._state, entry, signature_checked=True)
                except LedgerError as exc:
                    raise CorruptStoreError(f"recovery stopped: {exc}") from exc
                self._remember(entry)
        self._check_stored_checkpoint()
        if self._state.size:
            self._sign_checkpoint()

    def _check_stored_checkpoint(self) -> None:
        path = self.data_dir / CHECKPOINT_FILE
        if not path.exists() or not self._state.size:
            return
        verifier = parse_verifier_key(self._state.log_key)
        try:
            stored = verify_checkpoint(path.read_bytes(), verifier, origin=self._state.origin)
        except CheckpointError as exc:
            raise CorruptStoreError(f"stored checkpoint does not verify: {exc}") from exc
        if stored.size > self._tree.size:
            raise CorruptStoreError(
                f"the stored checkpoint covers {stored.size} entries but only "
                f"{self._tree.size} were recovered: acknowledged entries are missing"
            )
        if self._tree.root(stored.size) != stored.root:
            raise CorruptStoreError(
                f"the recovered log disagrees with the stored checkpoint at size {stored.size}"
            )

    # ---- writing

    def append(self, signed: SignedEvent) -> AppendResult:
        """Append ``signed`` durably; return its entry (the existing one for a duplicate).

        Raises :class:`SignatureError`, :class:`RuleViolation` (and other :class:`LedgerError`)
        for events the ledger refuses, :class:`StoreError` when the disk fails.
        """
        existing = self._existing(signed)
        if existing is not None:
            return existing
        # Verify the signature here, in the caller's thread, so the single committer thread
        # does only the cheap work. The key is found by its id, which commits to the key itself,
        # so the verdict holds whatever the membership; the rules still check membership.
        member = self.member_for_key(signed.event.author)
        if member is not None:
            check_event_signature(signed, member.public_key)
        outcome = self._committer.submit(signed)
        if isinstance(outcome, LedgerError):
            raise outcome
        return outcome

    def _existing(self, signed: SignedEvent) -> AppendResult | None:
        """The stored entry of an event posted again. The event id does not cover the
        signature, so a repost whose signature differs from the stored one (Ed25519 signing is
        deterministic: a genuine repost carries the same) is verified before it is answered."""
        entry = self._find(signed.event.id)
        if entry is None:
            return None
        if entry.event.sig != signed.sig:
            author = self._state.member_by_key(signed.event.author)
            if author is None:  # cannot happen for a stored event; refuse rather than guess
                raise SignatureError(f"event {signed.event.id[:16]}: unknown author key")
            check_event_signature(signed, author.public_key)
        return AppendResult(entry=entry, created=False)

    def _find(self, event_id: str) -> Entry | None:
        """The entry holding ``event_id``, if any (the index gives candidates; confirm each)."""
        for index in self._ids.candidates(bytes.fromhex(event_id)):
            entry = self._read_entry(index)
            if entry.event.event.id == event_id:
                return entry
        return None

    def _commit(self, batch: list[SignedEvent]) -> list[AppendResult | LedgerError]:
        outcomes: list[AppendResult | LedgerError] = []
        fresh: list[Entry] = []
        received = f.timestamp(self._clock(), "registry clock")  # one time for the batch
        with self._lock:
            state = self._state
            ids_in_batch: dict[str, Entry] = {}
            for signed in batch:
                key = signed.event.id
                prior = ids_in_batch.get(key) or self._find(key)
                if prior is not None:
                    outcomes.append(AppendResult(entry=prior, created=False))
                    continue
                entry = Entry.following(
                    index=state.size, prev=state.head, received=received, event=signed
                )
                author = state.member_by_key(signed.event.author)
                try:
                    # Signatures by already known authors were verified in append().
                    apply(state, entry, signature_checked=author is not None)
                except LedgerError as exc:
                    outcomes.append(exc)
                    continue
                ids_in_batch[key] = entry
                fresh.append(entry)
                outcomes.append(AppendResult(entry=entry, created=True))
        if not fresh:
            return outcomes
        try:
            self._store.append_batch([entry.canonical for entry in fresh])
        except BaseException:
            # The state already holds entries that are not durable: rebuild it from disk.
            with self._lock:
                self._reload()
            raise
        with self._grown:
            for entry in fresh:
                self._remember(entry)
            self._sign_checkpoint()
            self._grown.notify_all()
            due = self._state.size - self._snapshot_size >= self._snapshot_every
        if due:
            self.snapshot()
        return outcomes

    def _reload(self) -> None:
        self._state, self._tree, self._ids = State(), MerkleTree(), IdIndex()
        self._snapshot_size = 0
        self._recover()

    def _remember(self, entry: Entry) -> None:
        self._ids.add(bytes.fromhex(entry.event.event.id), entry.index)
        self._tree.append(entry.leaf_hash)

    def _sign_checkpoint(self) -> None:
        cp = Checkpoint(origin=self._state.origin, size=self._tree.size, root=self._tree.root())
        self._checkpoint = sign_checkpoint(cp, self._log_key)

    def snapshot(self) -> None:
        """Persist the checkpoint and a snapshot of the derived data (called periodically)."""
        with self._lock:
            self._store.sync_index()
            write_atomic(self.data_dir / CHECKPOINT_FILE, self._checkpoint)
            write_snapshot(self.data_dir, state=self._state, tree=self._tree, ids=self._ids)
            self._snapshot_size = self._state.size

    def close(self) -> None:
        self._committer.close()
        if self._state.size:
            self.snapshot()
        self._store.close()

    # ---- reading

    @property
    def size(self) -> int:
        return self._tree.size

    @property
    def origin(self) -> str:
        return self._state.origin

    @property
    def log_key(self) -> str:
        """The registry's C2SP note verifier key, as the genesis event names it."""
        return self._state.log_key

    def checkpoint(self) -> bytes:
        return self._checkpoint

    def entry_bytes(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise StoreError(f"entry {index} does not exist (the ledger has {self.size})")
        return self._store.read(index)

    def entries_bytes(self, start: int, limit: int) -> list[bytes]:
        stop = min(self.size, start + max(0, limit))
        if start >= stop:
            return []
        return self._store.read_range(start, stop)

    def entry(self, index: int) -> Entry:
        return self._read_entry(index)

    def _read_entry(self, index: int) -> Entry:
        return Entry.from_canonical(self.entry_bytes(index))

    def root(self, size: int | None = None) -> bytes:
        with self._lock:
            return self._tree.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with self._lock:
            if size > self._tree.size:
                raise ProofError(f"tree size {size} is beyond the ledger's {self._tree.size}")
            return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        with self._lock:
            if new > self._tree.size:
                raise ProofError(f"tree size {new} is beyond the ledger's {self._tree.size}")
            return self._tree.consistency_proof(old, new)

    def wait_for(self, size: int, timeout: float) -> bool:
        """Block until the ledger holds more than ``size`` entries or ``timeout`` passes."""
        with self._grown:
            return self._grown.wait_for(lambda: self._tree.size > size, timeout=timeout)

    def member_for_key(self, key_id: str) -> MemberRecord | None:
        member = self._state.member_by_key(KeyId(key_id))
        return member if member is not None and member.active else None

    def task(self, event_id: str) -> TaskRecord:
        with self._lock:
            record = self._state.tasks.get(event_id)  # type: ignore[call-overload]
        if record is None:
            raise UnknownTaskError(f"no task {event_id[:16]} in this ledger")
        return record  # type: ignore[no-any-return]

    def task_view(self, event_id: str) -> dict[str, Any]:
        """The read model of a task: its entry and each site's latest state.

        The committer folds a batch into the state before the batch is durable and in the tree;
        a view naming such an entry would send a reader for an entry no checkpoint covers yet
        (or, if the write fails, never will). So the view waits until every entry it names is
        committed."""
        self.task(event_id)

        def committed() -> bool:
            record = self._state.tasks.get(event_id)  # type: ignore[call-overload]
            return record is None or _newest_index(record) < self._tree.size

        with self._grown:
            if not self._grown.wait_for(committed, timeout=10.0):
                raise StoreError("the ledger's write path is stalled; try again")
            record = self._state.tasks.get(event_id)  # type: ignore[call-overload]
            if record is None:  # a failed write rebuilt the state without it
                raise UnknownTaskError(f"no task {event_id[:16]} in this ledger")
            sites = {
                name: {"state": p.state, "index": p.index, "finished": p.finished}
                for name, p in record.sites.items()
            }
            cancelled = record.cancelled
        return {
            "task": self.entry(record.index).to_dict(),
            "sites": sites,
            "cancelled": cancelled,
        }


def _newest_index(record: TaskRecord) -> int:
    """The index of the newest entry a task's read model names."""
    indexes = [p.index for p in record.sites.values() if p.index is not None]
    return max([record.index, record.cancelled or 0, *indexes])
