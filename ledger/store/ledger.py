"""The ledger: the single write path of one data directory, over its read side
(:class:`ledger.store.reads.LedgerReads`); opening recovers (:mod:`ledger.store.recovery`).

Invariant: an append returns only after its entry is durable and signed under a new checkpoint.
Entries reach the disk only through :class:`ledger.store.Store` (its docstring is the contract):
the embedded :class:`EntryStore` implements it, and so does
:class:`ledger.store.postgres.entries.PostgresStore`, which several registry processes may share:
each judges new events against the state as of the entry before them, taking the entries the
others appended first (``append_sequenced``), and takes them as they come (``watch``).

Of the processes sharing a store, one at a time integrates (``Store.integrating``): it signs each
checkpoint and publishes it in the store. Every process, the integrator too, serves only
checkpoints the store holds, each checked against its own tree, and entries only up to the one it
serves (``_served``): a reader never sees an entry no checkpoint covers, and (``sync``, asked
whenever a reader reaches past what is served) never an older checkpoint than one any process
served before, whichever replica answers. An append returns once a served checkpoint covers it.
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
from ledger.checkpoint import Checkpoint, sign_checkpoint, unverified_size
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
from ledger.store.integrity import recheck
from ledger.store.postgres.nonces import Nonces
from ledger.store.reads import LedgerReads
from ledger.store.recovery import recover
from ledger.store.snapshot import write_snapshot
from ledger.timewindow import DEFAULT_TIME_WINDOW, TimeWindow
from ledger.witness_rules import policy_of

SNAPSHOT_EVERY = 50_000
PUBLISH_WAIT = 10.0  # seconds an append waits for the integrator's checkpoint to cover it
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendResult:
    entry: Entry
    created: bool  # False when the same signed event was already in the ledger


class Ledger(LedgerReads):
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

    @property
    def integrating(self) -> bool:
        """Whether this process signs the checkpoints (see the module)."""
        return self._store.integrating()

    def _await_checkpoint(self, index: int) -> None:
        """Wait until the checkpoint served covers entry ``index`` (at once where this process
        signs; a shared store's integrator publishes within milliseconds). The entry is
        committed either way: after ``PUBLISH_WAIT`` the append is answered regardless."""
        with self._grown:
            if not self._grown.wait_for(lambda: self._served > index, timeout=PUBLISH_WAIT):
                log.warning("no checkpoint covers entry %d after %.0f s", index, PUBLISH_WAIT)

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

    def _adopt(self, newer: Sequence[bytes]) -> None:
        """Fold in entries other registry processes appended to a shared store (checked against
        the chain and the rules; their signatures were checked where they were appended), and
        wake the long-polls. Called with the lock held."""
        for payload in newer:
            entry = recheck(self._state, self._state.size, payload, snapshot_size=0)
            self._remember(entry)
        if newer:
            self._sign_checkpoint()
            self._grown.notify_all()

    def _catch_up(self) -> None:
        """The store's watcher: take what other processes appended, and the checkpoint the
        integrator published."""
        if self._unsettled:
            return

        def adopt(newer: Sequence[bytes], published: bytes | None) -> None:
            with self._grown:
                self._adopt(newer)
                self._adopt_published(published)
                self._grown.notify_all()

        self._store.catch_up(adopt)
        self.cosignatures.pull()

    def _take_over(self) -> None:
        """Elected to integrate (the store's election thread): sign over everything sequenced."""
        self._catch_up()
        with self._grown:
            if self._state.size and not self._unsettled:
                self._sign_checkpoint()
                self._grown.notify_all()
        log.info("integrating the ledger from size %d", self._served)

    def sync(self) -> None:
        if self._store.shared:
            self._catch_up()

    def _published(self, note: bytes) -> None:
        """The store's publisher wrote ``note`` (this process signed it): serve it."""
        with self._grown:
            self._adopt_published(note, signed_here=True)
            self._grown.notify_all()

    def _adopt_published(self, note: bytes | None, *, signed_here: bool = False) -> None:
        """Serve ``note``, a checkpoint the integrator published, if newer than the one served
        and exactly the note this process would sign over its own tree at that size (Ed25519
        signing is deterministic): a store whose checkpoint disagrees with its entries is
        reported, never served (``signed_here``: this process signed it over that tree).
        Called with the lock held (or before any other thread runs)."""
        if not note:
            return
        try:
            size = unverified_size(note)
        except LedgerError:
            size = -1
        if size <= self._served or size > self._tree.size:
            return  # old news, or ahead of the entries read here (the next catch-up has them)
        cp = Checkpoint(origin=self._state.origin, size=size, root=self._tree.root(size))
        if not signed_here and note != sign_checkpoint(cp, self._log_key):
            log.error("the published checkpoint of size %d does not match the entries", size)
            return
        self._checkpoint, self._served = note, size
        self.cosignatures.signed(cp)

    def _reload(self) -> None:
        """Rebuild the derived data from the store after a failed write. If the store cannot
        answer (a database that is gone), the state may hold entries that never became durable:
        it stays unsettled, and the next commit reloads before it appends anything."""
        self._unsettled = True
        self._recover()
        self._unsettled = False

    def _remember(self, entry: Entry) -> None:
        self._ids.add(bytes.fromhex(entry.event.event.id), entry.index)
        self._tree.append(entry.leaf_hash)

    def _sign_checkpoint(self) -> None:
        """Sign a checkpoint over the whole tree, if this process integrates (see the module)."""
        if not self._store.integrating():
            return
        cp = Checkpoint(origin=self._state.origin, size=self._tree.size, root=self._tree.root())
        note = sign_checkpoint(cp, self._log_key)
        self.cosignatures.signed(cp)
        if self._store.shared:  # served once the store holds it (see the module)
            self._store.publish(note, self._published)
        else:
            self._checkpoint, self._served = note, cp.size

    def snapshot(self) -> None:
        """Persist the checkpoint and a snapshot of the derived data (called periodically)."""
        with self._lock:
            self._store.sync_index()
            if self._checkpoint:
                self._store.save_checkpoint(self._checkpoint)
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

    def cosigned_checkpoint(self) -> bytes:
        """The newest cosigned checkpoint, every cosignature appended (DESIGN 12)."""
        self.sync()
        with self._lock:
            latest, size = self._checkpoint, self._served
        return self.cosignatures.cosigned_note(latest, size)

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
