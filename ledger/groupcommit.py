"""Group commit: many threads submit items, and the first one waiting commits them in batches.

Each ``commit(batch)`` call is meant to be one durable write (one fsync), so concurrent
submitters share its cost. Batching is natural, with no timer: while one commit runs, new items
queue up, and the next commit takes all of them (up to ``max_batch``). A lone submitter is
therefore committed at once, in its own thread.

There is no committer thread. The submitter at the front of the queue is the leader: it commits
the batch at the front in its own thread, hands each follower its result, and wakes the next
front submitter, which leads the next batch. A thread handoff costs tens of microseconds of
GIL traffic, and a lone submitter (the usual case of a quiet registry) makes none.

Invariants:

- Items are committed in submission order (the order ``submit`` took the queue lock), and each
  batch is a contiguous run of that order.
- A submitter's call returns only after the batch holding its item has been committed, with the
  result ``commit`` gave for that item; if ``commit`` raises, every submitter of that batch gets
  that exception, and the next batch is committed as usual.
- ``close`` waits until everything submitted before it is committed; later submits raise
  StoreError.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ledger.errors import StoreError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitStats:
    """Counters since start: commit calls, items committed through them, the largest batch."""

    commits: int
    items: int
    largest: int

    @property
    def mean_batch(self) -> float:
        return self.items / self.commits if self.commits else 0.0


class _Waiter(Generic[T, R]):
    """One submitted item, its submitter's wake-up and, once committed, its outcome."""

    __slots__ = ("abandoned", "done", "error", "item", "result", "wake")

    def __init__(self, item: T, lock: threading.Lock) -> None:
        self.item = item
        self.wake = threading.Condition(lock)
        self.done = False
        self.abandoned = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommitter(Generic[T, R]):
    """Commit submitted items in batches, each led by the submitter at the front."""

    def __init__(self, commit: Callable[[list[T]], list[R]], *, max_batch: int = 4096) -> None:
        if max_batch < 1:
            raise StoreError(f"max_batch: expected >= 1, found {max_batch}")
        self._commit = commit
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: deque[_Waiter[T, R]] = deque()
        self._drained = threading.Condition(self._lock)
        self._closing = False
        self._commits = 0
        self._items = 0
        self._largest = 0

    def submit(self, item: T) -> R:
        """Queue ``item`` and block until its batch is committed; return its result, or raise
        what ``commit`` raised for the batch."""
        waiter: _Waiter[T, R] = _Waiter(item, self._lock)
        interrupted: BaseException | None = None
        with self._lock:
            if self._closing:
                raise StoreError("group committer: closed, no more submissions")
            self._queue.append(waiter)
            try:
                while not waiter.done and self._queue[0] is not waiter:
                    waiter.wake.wait()
            except BaseException as exc:  # KeyboardInterrupt, in the main thread
                # The item stays queued and is committed all the same. If this thread was
                # due to lead, it leads first, so the queue never stalls without a leader.
                if waiter.done or self._queue[0] is not waiter:
                    waiter.abandoned = True
                    raise
                interrupted = exc
            batch = None if waiter.done else self._front()
        if batch is not None:
            self._lead(batch)
        if interrupted is not None:
            raise interrupted
        if waiter.error is not None:
            raise waiter.error
        return waiter.result  # type: ignore[return-value]

    def _front(self) -> list[_Waiter[T, R]]:
        return [self._queue[n] for n in range(min(len(self._queue), self._max_batch))]

    def _lead(self, batch: list[_Waiter[T, R]]) -> None:
        """Commit ``batch`` (the front of the queue) outside the lock, hand out the outcomes and
        wake the next leader; lead on while the next front's submitter has gone."""
        while True:
            results: list[R] = []
            error: BaseException | None = None
            try:
                results = self._commit([waiter.item for waiter in batch])
                if len(results) != len(batch):
                    raise StoreError(
                        f"group commit: expected {len(batch)} results, found {len(results)}"
                    )
            except BaseException as exc:  # every submitter of the batch must wake
                error = exc
            with self._lock:
                for n, waiter in enumerate(batch):
                    self._queue.popleft()
                    if error is None:
                        waiter.result = results[n]
                    else:
                        waiter.error = error
                    waiter.done = True
                    waiter.wake.notify()
                self._commits += 1
                self._items += len(batch)
                self._largest = max(self._largest, len(batch))
                if not self._queue:
                    self._drained.notify_all()
                    return
                if not self._queue[0].abandoned:
                    self._queue[0].wake.notify()  # the next leader
                    return
                batch = self._front()

    @property
    def stats(self) -> CommitStats:
        with self._lock:
            return CommitStats(commits=self._commits, items=self._items, largest=self._largest)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new submissions and wait (up to ``timeout`` seconds) for queued items to be
        committed by their submitters. Idempotent."""
        with self._lock:
            self._closing = True
            self._drained.wait_for(lambda: not self._queue, timeout)
