"""The ledger: the single write path and the read side of one data directory.

``Ledger.append`` is the only way an entry is written: parse (done by the caller), check the
signature, check that the registry holds every blob the body names (:func:`registry_blobs`;
:class:`MissingBlobError` otherwise), apply the rules and the time window (the event's ``time``
against the entry's ``received``, :class:`ledger.timewindow.TimeWindow`), append durably (group
commit: many concurrent appends share one fsync), then sign a new checkpoint. An append returns
only after its entry is durable. The blob and time checks admit new events only: replay never runs
them, and an event already in the ledger is answered with its entry before either runs.

Data directory::

    LOCK            exclusive lock: one registry process per data directory
    entries.log     the append-only entry log (see ledger.store.entries)
    entries.idx     offsets into it; rebuildable
    objects/        content-addressed blobs
    checkpoint      the latest signed checkpoint note, replaced atomically
    SNAPSHOT, snapshots/   derived state, Merkle levels and event ids (see ledger.store.snapshot)

Opening recovers: the store cuts a torn tail; the snapshot is loaded only if its own digests
hold (else it is ignored, with a warning, and the state rebuilt from the log, then snapshotted
again); the entries it covers must still be the bytes it was taken over (one sequential hash of the
log against the digest the snapshot recorded; on a mismatch every entry is compared with its leaf
hash, and the first damaged one is named and the open refused: a registry never serves, or signs
over, history other than what it signed); every entry after it is re-checked against the chain
and the rules (their signatures were checked when they were appended; ``pht audit`` re-verifies
everything), and a record holding another entry is named as such; the stored checkpoint must be a
prefix of the recovered tree (else acknowledged entries were lost, which is reported loudly); then
a fresh checkpoint is signed for the recovered size.

Reading: every entry served (a page, one entry, the entry behind a task view) is checked against
its leaf hash in the tree first; one that does not match raises :class:`DamagedEntryError` naming
it, and is not served.
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
from ledger.bodies import registry_blobs
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import (
    BlobError,
    CorruptStoreError,
    DamagedEntryError,
    LedgerError,
    MissingBlobError,
    ProofError,
    SignatureError,
    StoreError,
    UnknownTaskError,
    UntrustedLogError,
    WithheldEntriesError,
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
from ledger.store.integrity import check_leaves, first_damage, recheck
from ledger.store.snapshot import Snapshot, read_snapshot, write_snapshot
from ledger.timewindow import DEFAULT_TIME_WINDOW, TimeWindow
from ledger.trust import check_checkpoint, verify_note

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 50_000
CHECKPOINT_FILE = "checkpoint"


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    entry: Entry
    created: bool  # False when the same signed event was already in the ledger


class Ledger:
    """One open data directory. Thread-safe; one process per directory (the store locks it).

    ``clock`` stamps each entry's ``received``; ``time_window`` bounds how far a new event's own
    ``time`` may lie from it (default :data:`ledger.timewindow.DEFAULT_TIME_WINDOW`: 24 hours
    behind, 10 minutes ahead; None accepts any time).
    """

    def __init__(
        self,
        data_dir: Path,
        store: EntryStore,
        *,
        log_key: SigningKey,
        clock: Callable[[], str],
        snapshot_every: int = SNAPSHOT_EVERY,
        time_window: TimeWindow | None = DEFAULT_TIME_WINDOW,
    ) -> None:
        self.data_dir = data_dir
        self.blobs = BlobStore(data_dir / "objects")
        self._store = store
        self._log_key = log_key
        self._clock = clock
        self.time_window = time_window  # None: accept any event time (tests of old entries)
        self._snapshot_every = snapshot_every
        self._lock = threading.Lock()  # guards state, tree, ids and the checkpoint
        self._grown = threading.Condition(self._lock)
        self._state = State()
        self._tree = MerkleTree()
        self._ids = IdIndex()
        self._snapshot_size = 0
        self._checkpoint = b""
        replayed = not self._recover()
        self._committer: GroupCommitter[SignedEvent, AppendResult | LedgerError] = GroupCommitter(
            self._commit
        )
        if replayed and self._state.size:
            try:
                self.snapshot()  # so that the next open need not replay it all again
            except BaseException:
                self._committer.close()
                raise

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
        time_window: TimeWindow | None = DEFAULT_TIME_WINDOW,
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
            time_window=time_window,
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
        time_window: TimeWindow | None = DEFAULT_TIME_WINDOW,
    ) -> Ledger:
        data_dir = Path(data_dir)
        if not (data_dir / "entries.log").exists():
            raise StoreError(f"{data_dir} holds no ledger (run `pht init` first)")
        store = EntryStore.open(data_dir)
        try:
            return cls(
                data_dir,
                store,
                log_key=log_key,
                clock=clock,
                snapshot_every=snapshot_every,
                time_window=time_window,
            )
        except BaseException:
            store.close()  # release the LOCK: the operator repairs and opens again
            raise

    def _recover(self) -> bool:
        """Load the snapshot (if it can be trusted), re-check what follows it, check the stored
        checkpoint, sign a fresh one. Returns whether a snapshot was used."""
        snapshot = read_snapshot(self.data_dir)
        count = self._store.count
        if snapshot is not None and snapshot.size > count:
            raise CorruptStoreError(
                f"the snapshot covers {snapshot.size} entries but the log holds only {count}: "
                "acknowledged entries are missing"
            )
        if snapshot is not None and self._covered_intact(snapshot):
            self._state, self._tree = snapshot.state, snapshot.tree
            self._ids = snapshot.ids
            self._snapshot_size = snapshot.size
        else:
            snapshot = None
            self._store.start_digest(0)
        start = self._state.size
        if start < count:
            log.info("re-checking %d entries written after the last snapshot", count - start)
        for first in range(start, count, 4096):
            stop = min(count, first + 4096)
            try:
                misplaced = None
                try:
                    chunk = self._store.read_range(first, stop)
                except DamagedEntryError as exc:
                    # The index may point at moved records: walk the log to say what they hold.
                    chunk, misplaced = self._store.read_range_scanned(first, stop), exc
                for position, data in enumerate(chunk, first):
                    self._remember(recheck(self._state, position, data, snapshot_size=start))
                if misplaced is not None:
                    raise misplaced
            except DamagedEntryError as exc:
                raise self._refuse(exc) from exc
        self._check_stored_checkpoint()
        if self._state.size:
            self._sign_checkpoint()
        return snapshot is not None

    def _covered_intact(self, snapshot: Snapshot) -> bool:
        """Whether the entries ``snapshot`` covers are the bytes it was taken over: one hash of
        the log's first ``log_bytes`` against the recorded digest, and only on a mismatch each
        entry against its leaf. Raises DamagedEntryError naming the first damaged entry; False
        when every entry holds but the snapshot's log digest does not (then it is not used)."""
        found = self._store.start_digest(snapshot.size)
        at = self._store.offset(snapshot.size)
        if (at, found) == (snapshot.log_bytes, snapshot.log_sha256):
            return True
        damage = first_damage(self._store, snapshot.tree, snapshot.size)
        if damage is not None:
            raise self._refuse(damage) from damage
        log.warning(
            "snapshot of size %d: the log's first %d bytes hash to %s, not the %s of its %d "
            "bytes the snapshot recorded, though every entry still hashes to its leaf; ignoring "
            "the snapshot and rebuilding the state from the log",
            snapshot.size,
            at,
            found[:16],
            snapshot.log_sha256[:16],
            snapshot.log_bytes,
        )
        return False

    def _refuse(self, damage: DamagedEntryError) -> DamagedEntryError:
        """``damage`` with what it means for this data directory and how to recover."""
        return DamagedEntryError(
            damage.index,
            f"{damage.reason}. {self.data_dir / 'entries.log'} no longer holds what this registry "
            f"signed, so it will not be served or appended to: restore the data directory from a "
            f"backup that holds entry {damage.index} intact (`pht audit --data DIR` checks a copy)",
        )

    def _check_stored_checkpoint(self) -> None:
        """The recovered log is the history the stored checkpoint signed (through the trust
        core, as every reader checks it): else acknowledged entries are missing or altered."""
        path = self.data_dir / CHECKPOINT_FILE
        if not path.exists() or not self._state.size:
            return
        note = path.read_bytes()
        try:
            stored = verify_note(note, log_key=self._state.log_key, origin=self._state.origin)
            check_checkpoint(stored, self._tree, exact=False)
        except WithheldEntriesError as exc:
            raise CorruptStoreError(
                f"the stored checkpoint covers more entries than were recovered "
                f"({self._tree.size}): acknowledged entries are missing ({exc})"
            ) from exc
        except UntrustedLogError as exc:
            raise CorruptStoreError(
                f"the recovered log is not the history the stored checkpoint signed: {exc}"
            ) from exc

    # ---- writing

    def append(self, signed: SignedEvent) -> AppendResult:
        """Append ``signed`` durably; return its entry (the existing one for a duplicate).

        Raises :class:`SignatureError`, :class:`MissingBlobError` (a named blob was never
        uploaded), :class:`BlobError` (it was, with another size), :class:`EventTimeError`,
        :class:`RuleViolation` (and other :class:`LedgerError`) for events the ledger refuses,
        :class:`StoreError` when the disk fails.
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
        self._require_blobs(signed)
        outcome = self._committer.submit(signed)
        if isinstance(outcome, LedgerError):
            raise outcome
        return outcome

    def _require_blobs(self, signed: SignedEvent) -> None:
        """Refuse an event naming a blob this registry does not hold, or holds with another size
        (no reader could fetch it: the event would be useless in the log for good)."""
        for named in registry_blobs(signed.event.body):
            if not self.blobs.exists(named.sha256):
                raise MissingBlobError(
                    f"{named.where} names blob {named.sha256}, which the registry does not hold; "
                    f"upload it (PUT /v1/blobs/{named.sha256}) before the event that names it"
                )
            if named.size is not None and (stored := self.blobs.size(named.sha256)) != named.size:
                raise BlobError(
                    f"{named.where} gives blob {named.sha256} a size of {named.size} bytes; "
                    f"the stored blob has {stored}"
                )

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
                    if self.time_window is not None:  # first: apply changes the state
                        self.time_window.check(signed.event.time, received)
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
            log_bytes, log_sha256 = self._store.digest()
            if log_bytes != self._store.offset(self._state.size):
                return  # a batch is in the log but not yet in the tree; the next one will do
            write_snapshot(
                self.data_dir,
                state=self._state,
                tree=self._tree,
                ids=self._ids,
                log_bytes=log_bytes,
                log_sha256=log_sha256,
            )
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
        """Entry ``index``'s stored bytes. Raises StoreError if it does not exist,
        DamagedEntryError if they do not hash to its leaf."""
        if not 0 <= index < self.size:
            raise StoreError(f"entry {index} does not exist (the ledger has {self.size})")
        return self._checked(index, self._store.read_range(index, index + 1, checksums=False))[0]

    def entries_bytes(self, start: int, limit: int) -> list[bytes]:
        """Up to ``limit`` entries' stored bytes from ``start``, each checked against its leaf
        hash (DamagedEntryError names the first that is not)."""
        stop = min(self.size, start + max(0, limit))
        if start >= stop:
            return []
        # The leaf hash checks each payload's bytes; the records' CRCs would only repeat that.
        return self._checked(start, self._store.read_range(start, stop, checksums=False))

    def _checked(self, start: int, payloads: list[bytes]) -> list[bytes]:
        """``payloads`` if they hash to the tree's leaves from ``start``. The tree only grows and
        its leaves never change, so no lock is needed; only a failed write's reload rebuilds it
        (from the same log), and a page beyond the tree being rebuilt is answered later."""
        tree = self._tree
        stop = start + len(payloads)
        if stop > tree.size:
            raise StoreError(f"entries {start}..{stop - 1} are being recovered; try again")
        check_leaves(start, payloads, tree.leaf_hashes(start, stop))
        return payloads

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
