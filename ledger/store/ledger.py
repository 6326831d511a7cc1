"""The ledger: the single write path of one data directory, over its read side
(:class:`ledger.store.reads.LedgerReads`); opening recovers (:mod:`ledger.store.recovery`).

Invariant: an append returns only after its entry is durable and signed under a new checkpoint.
Entries reach the disk only through :class:`ledger.store.Store` (its docstring is the contract):
the embedded :class:`EntryStore` implements it, and so does
:class:`ledger.store.postgres.entries.PostgresStore`, which several registry processes may share:
each judges new events against the state as of the entry before them, taking the entries the
others appended first (``append_sequenced``), and takes them as they come (``watch``).

The checkpoints it signs, and those other processes sharing the store sign, are the business of
:class:`ledger.store.integration.Integration`, its base.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from crypto import SigningKey
from ledger import fields as f
from ledger.bodies import registry_blobs
from ledger.errors import BlobError, LedgerError, MissingBlobError, SignatureError
from ledger.events import Entry, SignedEvent, utc_now
from ledger.merkle import MerkleTree
from ledger.rules import apply, check_event_signature
from ledger.state import State
from ledger.store import Blobs, Store
from ledger.store.backend import Backend, open_for_ledger
from ledger.store.blobs import BlobStore
from ledger.store.cosignatures import CosignatureBook, CosignatureLines
from ledger.store.groupcommit import GroupCommitter
from ledger.store.idindex import IdIndex
from ledger.store.integration import Integration
from ledger.store.postgres.nonces import Nonces
from ledger.store.recovery import recover
from ledger.store.snapshot import write_snapshot
from ledger.timewindow import DEFAULT_TIME_WINDOW, TimeWindow
from ledger.witness_rules import policy_of

log = logging.getLogger(__name__)

SNAPSHOT_EVERY = 50_000


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    entry: Entry
    created: bool  # False when the same signed event was already in the ledger


class Ledger(Integration):
    """One open data directory. Thread-safe; one process per directory (its LOCK), and with a
    PostgreSQL store any number of processes (each with a directory of its own) per database.

    ``clock`` stamps each entry's ``received``; ``time_window`` bounds how far a new event's own
    ``time`` may lie from it (default :data:`ledger.timewindow.DEFAULT_TIME_WINDOW`: 24 hours
    behind, 10 minutes ahead; None accepts any time).

    :meth:`append` is the only way an entry is written: parse (done by the caller), check the
    signature, check that the registry holds every blob the body names (:func:`registry_blobs`;
    :class:`MissingBlobError` otherwise), apply the rules and the time window (the event's
    ``time`` against the entry's ``received``, :class:`ledger.timewindow.TimeWindow`), append
    durably (group commit: many concurrent appends share one fsync), then sign a new checkpoint.
    An append returns only after its entry is durable. The blob and time checks admit new events
    only: replay never runs them, and an event already in the ledger is answered with its entry
    before either runs.

    Data directory::

        LOCK            exclusive lock: one registry process per data directory
        entries.log     the append-only entry log (see ledger.store.entries)
        entries.idx     offsets into it; rebuildable
        objects/        content-addressed blobs
        checkpoint      the latest signed checkpoint note, replaced atomically
        SNAPSHOT, snapshots/   derived state, Merkle levels and event ids (ledger.store.snapshot)

    Opening recovers (:func:`ledger.store.recovery.recover`), then signs a fresh checkpoint for
    the recovered size.

    ``store_url`` (``create``/``open``), a ``postgresql://`` URL, keeps the entries and blobs in
    that database instead (:mod:`ledger.store.postgres`); the data directory keeps the rest.
    """

    def __init__(
        self,
        data_dir: Path,
        store: Store,
        *,
        log_key: SigningKey,
        clock: Callable[[], str],
        snapshot_every: int = SNAPSHOT_EVERY,
        time_window: TimeWindow | None = DEFAULT_TIME_WINDOW,
        blobs: Blobs | None = None,
        cosignature_lines: CosignatureLines | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.blobs: Blobs = blobs if blobs is not None else BlobStore(data_dir / "objects")
        self._store = store
        self._log_key = log_key
        self._clock = clock
        self.time_window = time_window  # None: accept any event time (tests of old entries)
        self._snapshot_every = snapshot_every
        self._lock = threading.Lock()  # guards state, tree, ids and the checkpoint
        self._writing = threading.Lock()  # held through a commit, and to settle (see _settle)
        self._grown = threading.Condition(self._lock)
        self._state = State()
        self._tree = MerkleTree()
        self._ids = IdIndex()
        self._snapshot_size = 0
        self._checkpoint = b""
        self._served = 0  # the size of self._checkpoint: what readers are shown
        self._unsettled = False  # the state may be ahead of the store (see _reload)
        self.nonces: Nonces | None = None  # request nonces, when replicas share the store
        self._rest: Backend | None = None  # what open() opened beside the store
        self.cosignatures = CosignatureBook(
            data_dir,
            origin=lambda: self._state.origin,
            root=self.root,
            log_key=log_key,
            policy=lambda: policy_of(self._state),
            lines=cosignature_lines,
        )
        self._store.campaign()  # a shared store: stand for integrator before recovering
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
        # A store shared with other registry processes: take their entries and checkpoints.
        self._store.watch(self._catch_up, self._take_over)

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
        store_url: str | None = None,
    ) -> Ledger:
        """Create a new ledger whose entry 0 is ``genesis``; refuse an existing one."""
        ledger = cls._opened(
            Path(data_dir),
            store_url,
            create=True,
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
        store_url: str | None = None,
    ) -> Ledger:
        return cls._opened(
            Path(data_dir),
            store_url,
            create=False,
            log_key=log_key,
            clock=clock,
            snapshot_every=snapshot_every,
            time_window=time_window,
        )

    @classmethod
    def _opened(
        cls,
        data_dir: Path,
        store_url: str | None,
        *,
        create: bool,
        log_key: SigningKey,
        clock: Callable[[], str],
        snapshot_every: int,
        time_window: TimeWindow | None,
    ) -> Ledger:
        """The ledger over the embedded store of ``data_dir``, or the database ``store_url``."""
        backend = open_for_ledger(data_dir, store_url, create=create)
        try:
            ledger = cls(
                data_dir,
                backend.store,
                log_key=log_key,
                clock=clock,
                snapshot_every=snapshot_every,
                time_window=time_window,
                blobs=backend.blobs,
                cosignature_lines=backend.cosignatures,
            )
        except BaseException:
            backend.close()  # release the LOCK: the operator repairs and opens again
            raise
        ledger.nonces = backend.nonces
        ledger._rest = backend
        return ledger

    def _recover(self) -> bool:
        """Recover the derived data from the store, sign a fresh checkpoint over it. Returns
        whether a snapshot was used."""
        found = recover(self.data_dir, self._store)
        self._state, self._tree, self._ids = found.state, found.tree, found.ids
        self._snapshot_size = found.snapshot_size
        if self._state.size:
            self._sign_checkpoint()
            self._adopt_published(self._store.stored_checkpoint())
        return found.from_snapshot

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
        self._await_checkpoint(outcome.entry.index)
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
        self._await_checkpoint(entry.index)
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
        with self._writing:
            return self._commit_held(batch)

    def _commit_held(self, batch: list[SignedEvent]) -> list[AppendResult | LedgerError]:
        outcomes: list[AppendResult | LedgerError] = []
        fresh: list[Entry] = []
        received = f.timestamp(self._clock(), "registry clock")  # one time for the batch
        if self._unsettled:  # a failed write could not reload: the store must answer first
            with self._lock:
                self._reload()

        def decide(newer: Sequence[bytes]) -> list[bytes]:
            """With the next index reserved: take what other processes appended, then judge
            the batch against the state as of the entry before it."""
            with self._grown:
                self._adopt(newer)
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
                        # Signatures by authors known then were verified in append(); when other
                        # processes' entries came in since, the rules verify every one again.
                        checked = author is not None and not newer
                        apply(state, entry, signature_checked=checked, proposed=True)
                    except LedgerError as exc:
                        outcomes.append(exc)
                        continue
                    ids_in_batch[key] = entry
                    fresh.append(entry)
                    outcomes.append(AppendResult(entry=entry, created=True))
            return [entry.canonical for entry in fresh]

        try:
            self._store.append_sequenced(decide)
        except BaseException:
            if fresh:
                # The state already holds entries that may not be durable: rebuild it.
                with self._lock:
                    self._reload()
            raise
        if not fresh:
            return outcomes
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
        """Rebuild the derived data from the store after a failed write. If the store cannot
        answer (a database that is gone), the state may hold entries that never became durable:
        it stays unsettled, and the next commit, or the store's watcher (``_settle``), reloads
        before anything is appended or served."""
        self._unsettled = True
        self._recover()
        self._unsettled = False
        log.info("rebuilt from the store after a failed write, at size %d", self._state.size)

    def _settle(self) -> None:
        """Reload a ledger a failed write left unsettled (called by the store's watcher, each
        second on a shared store): reads answer again once the database does, not only after
        the next append. Between commits, so the reload never races the write path."""
        with self._writing, self._lock:
            if self._unsettled:
                self._reload()

    def snapshot(self) -> None:
        """Persist the checkpoint and a snapshot of the derived data (called periodically)."""
        with self._lock:
            self._store.sync_index()
            if self._checkpoint:
                self._store.save_checkpoint(self._checkpoint)
            log_bytes, log_sha256 = self._store.digest()
            if self._state.size != self._store.count:
                return  # entries are between the store and the tree; the next snapshot will do
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
        try:
            self.cosignatures.close()
            self._committer.close()
            if self._state.size:
                self.snapshot()  # may fail (a database that is gone): release the rest anyway
        finally:
            try:
                self._store.close()
            finally:
                rest, self._rest = self._rest, None  # closing twice must not close a fd twice
                if rest is not None:
                    rest.close_rest()
                else:
                    self.blobs.close()
