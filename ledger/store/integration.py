"""The checkpoints a ledger serves: signing them where this process integrates, and, on a store
several registry processes share (PostgreSQL replicas, DESIGN 10), taking the entries and the
checkpoints the others wrote. The base of :class:`ledger.store.ledger.Ledger`, which sets the
attributes below and owns the write path.

Of the processes sharing a store, one at a time integrates (``Store.integrating``): it signs each
checkpoint and publishes it in the store. Every process, the integrator too, serves only
checkpoints the store holds, each checked against its own tree, and entries only up to the one it
serves (``_served``): a reader never sees an entry no checkpoint covers, and (``sync``, asked
whenever a reader reaches past what is served) never an older checkpoint than one any process
served before, whichever replica answers. An append returns once a served checkpoint covers it.
A store only one process writes (the embedded one) serves what it signs, at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from crypto import SigningKey
from ledger.checkpoint import Checkpoint, sign_checkpoint, unverified_size
from ledger.errors import LedgerError, StoreError
from ledger.events import Entry
from ledger.store.cosignatures import CosignatureBook
from ledger.store.idindex import IdIndex
from ledger.store.integrity import recheck
from ledger.store.reads import LedgerReads

PUBLISH_WAIT = 10.0  # seconds an append waits for the integrator's checkpoint to cover it
log = logging.getLogger(__name__)


class Integration(LedgerReads):
    """Signing, publishing and adopting checkpoints (see the module). ``_lock`` (and ``_grown``)
    guard what :class:`LedgerReads` says, and ``_served`` with ``_checkpoint``."""

    _ids: IdIndex
    _log_key: SigningKey
    _unsettled: bool
    cosignatures: CosignatureBook

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

    def _settle(self) -> None:
        """Reload after a failed write (the write path's: Ledger._settle)."""
        raise NotImplementedError

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
        integrator published; first settle a ledger a failed write left unsettled."""
        if self._unsettled:
            self._settle()
            return

        def adopt(newer: Sequence[bytes], published: bytes | None) -> None:
            with self._grown:
                self._adopt(newer)
                self._adopt_published(published)
                self._grown.notify_all()

        self._store.catch_up(adopt)

    def _take_over(self) -> None:
        """Elected to integrate (the store's election thread): sign over everything sequenced.
        If catching up fails (the database went away again), what the tree holds is signed
        still: appends through other replicas may be waiting for a checkpoint over it."""
        try:
            self._catch_up()
        finally:
            with self._grown:
                if self._state.size and not self._unsettled:
                    self._sign_checkpoint()
                    self._grown.notify_all()
        log.info("integrating the ledger from size %d", self._tree.size)

    def sync(self) -> None:
        if not self._store.shared:
            return
        if self._unsettled:  # what it serves may be behind the others: no answer beats that
            raise StoreError("the ledger is recovering from a failed write; try again")
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

    def cosigned_checkpoint(self) -> bytes:
        """The newest cosigned checkpoint, every cosignature appended (DESIGN 12), including
        those other processes sharing the store took."""
        self.sync()
        self.cosignatures.pull()
        with self._lock:
            latest, size = self._checkpoint, self._served
        return self.cosignatures.cosigned_note(latest, size)
