"""The ledger's read side: entries, roots and proofs, members and task views, over the derived
data the write path (:class:`ledger.store.ledger.Ledger`) keeps.

Invariant: every entry served (a page, one entry, the entry behind a task view) is checked against
its leaf hash in the tree first; one that does not match raises :class:`DamagedEntryError` naming
it, and is not served. Nothing here writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from crypto import KeyId
from ledger.errors import ProofError, StoreError, UnknownTaskError, UnknownTileError
from ledger.events import Entry
from ledger.listing import MemberLine, TaskPage, TaskQuery, list_members, list_tasks
from ledger.merkle import MerkleTree
from ledger.state import MemberRecord, State, TaskRecord
from ledger.store import Store
from ledger.store.integrity import check_leaves
from ledger.tiles import Tile, bundle, entries_range, hash_tile
from ledger.view import TaskSnapshot
from ledger.witness_policy import WitnessPolicy
from ledger.witness_rules import policy_of


class LedgerReads:
    """What a reader asks a ledger. The write path that subclasses it sets the attributes below;
    ``_lock`` guards the state, the tree, the ids and the checkpoint, and ``_grown`` (on that
    lock) is notified whenever committed entries join the tree."""

    _store: Store
    _state: State
    _tree: MerkleTree
    _checkpoint: bytes
    _served: int  # the size of the checkpoint served: readers see the entries below it
    _lock: threading.Lock
    _grown: threading.Condition

    @property
    def size(self) -> int:
        return self._served

    @property
    def origin(self) -> str:
        return self._state.origin

    @property
    def log_key(self) -> str:
        """The registry's C2SP note verifier key, as the genesis event names it."""
        return self._state.log_key

    def sync(self) -> None:
        """Serve at least the newest checkpoint the store holds (a store shared by replicas:
        a reader sent to another replica next never sees an older one; a no-op otherwise)."""

    def checkpoint(self) -> bytes:
        """The signed checkpoint served (StoreError before a shared store's first one)."""
        self.sync()
        if not self._checkpoint:
            raise StoreError("the ledger's integrator has not published a checkpoint yet")
        return self._checkpoint

    def entry_bytes(self, index: int) -> bytes:
        """Entry ``index``'s stored bytes. Raises StoreError if it does not exist,
        DamagedEntryError if they do not hash to its leaf."""
        if not 0 <= index < self.size:
            raise StoreError(f"entry {index} does not exist (the ledger has {self.size})")
        return self._stored(index)

    def _stored(self, index: int) -> bytes:
        """Entry ``index`` (in the tree, served or not yet), checked against its leaf."""
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
        return Entry.from_canonical(self._stored(index))

    def root(self, size: int | None = None) -> bytes:
        with self._lock:
            return self._tree.root(size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if size > self.size:
            self.sync()
        with self._lock:
            if size > self._tree.size:
                raise ProofError(f"tree size {size} is beyond the ledger's {self._tree.size}")
            return self._tree.inclusion_proof(index, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        if new > self.size:
            self.sync()
        with self._lock:
            if new > self._tree.size:
                raise ProofError(f"tree size {new} is beyond the ledger's {self._tree.size}")
            return self._tree.consistency_proof(old, new)

    def tile(self, tile: Tile) -> bytes:
        """A C2SP tlog-tiles hash tile or entry bundle (:mod:`ledger.tiles`); UnknownTileError
        when the ledger does not hold all it covers yet. Entries are checked against their leaf
        hashes, as every entry served."""
        if tile.level is not None:
            with self._lock:
                return hash_tile(self._tree, tile)
        try:
            start, stop = entries_range(self.size, tile)
        except UnknownTileError:
            self.sync()  # a replica behind the one that served the reader's checkpoint
            start, stop = entries_range(self.size, tile)
        return bundle(self.entries_bytes(start, stop - start), start)

    def wait_for(self, size: int, timeout: float) -> bool:
        """Block until the ledger holds more than ``size`` entries or ``timeout`` passes."""
        with self._grown:
            return self._grown.wait_for(lambda: self._served > size, timeout=timeout)

    def member_for_key(self, key_id: str) -> MemberRecord | None:
        member = self._state.member_by_key(KeyId(key_id))
        return member if member is not None and member.active else None

    def member(self, name: str) -> MemberRecord | None:
        """The current member called ``name`` (None when there is none, or it was revoked)."""
        member = self._state.members.get(name)
        return member if member is not None and member.active else None

    def witness_policy(self) -> WitnessPolicy | None:
        """The witness policy in force (None: no witnesses required)."""
        return policy_of(self._state)

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
            return record is None or _newest_index(record) < self._served

        with self._grown:
            if not self._grown.wait_for(committed, timeout=10.0):
                raise StoreError("the ledger's write path is stalled; try again")
            record = self._state.tasks.get(event_id)  # type: ignore[call-overload]
            if record is None:  # a failed write rebuilt the state without it
                raise UnknownTaskError(f"no task {event_id[:16]} in this ledger")
            sites = {
                name: {
                    "state": p.state,
                    "index": p.index,
                    "finished": p.finished,
                    "history": _history(p.history),
                }
                for name, p in record.sites.items()
            }
            cancelled = record.cancelled
        return {
            "task": self.entry(record.index).to_dict(),
            "sites": sites,
            "cancelled": cancelled,
        }

    def task_list(self, query: TaskQuery) -> TaskPage:
        """The page of tasks ``query`` selects, newest first (:func:`ledger.listing.list_tasks`).

        Tasks are copied from the state in chunks under the lock, each once every entry it names
        is committed (as :meth:`task_view` waits; a task whose own entry is not yet committed is
        left for the next listing), so every index listed is below ``size``; entries are read
        outside the lock."""
        sizes: list[int] = []

        def newest_first() -> Iterator[TaskSnapshot]:
            before = query.after
            while True:
                chunk = self._committed_chunk(query, before, query.limit + 1, sizes)
                yield from chunk
                if len(chunk) <= query.limit:
                    return
                before = chunk[-1].index

        tasks = list_tasks(newest_first(), self.entry, query, size=self.size)
        return TaskPage(size=max(sizes, default=self.size), tasks=tasks.tasks, next=tasks.next)

    def _committed_chunk(
        self, query: TaskQuery, before: int | None, count: int, sizes: list[int]
    ) -> list[TaskSnapshot]:
        chunk: list[TaskSnapshot] = []

        def committed() -> bool:
            nonlocal chunk
            chunk = self._chunk(query, before, count)
            return all(_newest_index(task) < self._served for task in chunk)

        with self._grown:
            if not self._grown.wait_for(committed, timeout=10.0):
                raise StoreError("the ledger's write path is stalled; try again")
            sizes.append(self._served)
        return chunk

    def _chunk(self, query: TaskQuery, before: int | None, count: int) -> list[TaskSnapshot]:
        """Up to ``count`` committed tasks older than ``before`` that pass the cheap filters
        (under the lock). The state holds tasks in the order they were appended."""
        found: list[TaskSnapshot] = []
        size = self._served
        for record in reversed(self._state.tasks.values()):
            if record.index >= size or (before is not None and record.index >= before):
                continue
            if query.cheap_match(record):
                found.append(TaskSnapshot.of(record))
                if len(found) == count:
                    break
        return found

    def member_list(self) -> tuple[int, tuple[MemberLine, ...]]:
        """Every member and the ledger size the list reflects (once every entry about a member
        is committed; a member added by an uncommitted entry is left for the next listing)."""
        lines: tuple[MemberLine, ...] = ()

        def committed() -> bool:
            nonlocal lines
            size = self._served
            lines = list_members(m for m in self._state.members.values() if m.added < size)
            return all(line.index < size for line in lines)

        with self._grown:
            if not self._grown.wait_for(committed, timeout=10.0):
                raise StoreError("the ledger's write path is stalled; try again")
            return self._served, lines


def _history(history: tuple[int, ...] | None) -> list[int]:
    if history is None:  # only a site client's older saved state lacks it, never the registry's
        raise StoreError("this state was saved without the sites' histories; replay the log")
    return list(history)


def _newest_index(record: TaskRecord | TaskSnapshot) -> int:
    """The index of the newest entry a task's read model names."""
    indexes = [p.index for p in record.sites.values() if p.index is not None]
    return max([record.index, record.cancelled or 0, *indexes])
