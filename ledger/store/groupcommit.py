"""Group commit: many threads submit items, one background thread commits them in batches.

Each ``commit(batch)`` call is meant to be one durable write (one fsync), so concurrent
submitters share its cost. Batching is natural, with no timer: while one commit runs, new items
queue up, and the next commit takes all of them (up to ``max_batch``). A lone submitter is
therefore committed at once, and under load the batch grows with the commit's latency.

A lone submitter on a quiet committer commits in its own thread, when it is not the main
thread: handing the item to the committer thread and the result back costs two thread wake-ups,
about 0.2 ms on a small VM, which is most of an in-process append. The main thread always hands
off, so that a KeyboardInterrupt can never stop a commit halfway.

Invariants:

- Items are committed in submission order (the order ``submit`` took the queue lock), and each
  batch is a contiguous run of that order.
- A submitter's call returns only after the batch holding its item has been committed, with the
  result ``commit`` gave for that item; if ``commit`` raises, every submitter of that batch gets
  that exception, and the committer goes on with the next batch.
- ``close`` commits everything submitted before it, then stops the thread; later submits raise
  StoreError.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
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


class GroupCommitter(Generic[T, R]):
    """Commit submitted items in batches on one background thread (a lone submitter on a quiet
    committer, other than the main thread, commits its item itself)."""

    def __init__(
        self,
        commit: Callable[[list[T]], list[R]],
        *,
        max_batch: int = 4096,
        name: str = "group-commit",
    ) -> None:
        if max_batch < 1:
            raise StoreError(f"max_batch: expected >= 1, found {max_batch}")
        self._commit = commit
        self._max_batch = max_batch
        self._pending: deque[tuple[T, Future[R]]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False  # a commit is running (on the committer thread or inline)
        self._commits = 0
        self._items = 0
        self._largest = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit_async(self, item: T) -> Future[R]:
        """Queue ``item``; the returned future resolves once its batch is committed."""
        future: Future[R] = Future()
        future.set_running_or_notify_cancel()  # queued work cannot be cancelled
        with self._cond:
            if self._closing:
                raise StoreError("group committer: closed, no more submissions")
            self._pending.append((item, future))
            self._cond.notify()
        return future

    def submit(self, item: T, timeout: float | None = None) -> R:
        """Queue ``item`` and block until its batch is committed; return its result or raise
        what ``commit`` raised for the batch (TimeoutError if ``timeout`` passes first, the
        item staying queued)."""
        if threading.current_thread() is not threading.main_thread():
            with self._cond:
                inline = not (self._pending or self._busy or self._closing)
                self._busy = self._busy or inline
            if inline:
                return self._commit_inline(item)
        return self.submit_async(item).result(timeout)

    def _commit_inline(self, item: T) -> R:
        try:
            results = self._commit([item])
            if len(results) != 1:
                raise StoreError(f"group commit: expected 1 results, found {len(results)}")
        finally:
            with self._cond:
                self._busy = False
                self._commits += 1
                self._items += 1
                self._largest = max(self._largest, 1)
                self._cond.notify()  # items queued meanwhile are the committer thread's
        return results[0]

    @property
    def stats(self) -> CommitStats:
        with self._cond:
            return CommitStats(commits=self._commits, items=self._items, largest=self._largest)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, then stop the thread. Idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _take(self) -> list[tuple[T, Future[R]]] | None:
        with self._cond:
            while self._busy or (not self._pending and not self._closing):
                self._cond.wait()  # an inline commit runs, or there is nothing to do yet
            if not self._pending:
                return None
            self._busy = True
            count = min(len(self._pending), self._max_batch)
            return [self._pending.popleft() for _ in range(count)]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            items = [item for item, _ in batch]
            outcome: list[R] | BaseException
            try:
                outcome = self._commit(items)
                if len(outcome) != len(items):
                    raise StoreError(
                        f"group commit: expected {len(items)} results, found {len(outcome)}"
                    )
            except BaseException as exc:  # every submitter must wake, whatever went wrong
                outcome = exc
            with self._cond:
                self._busy = False
                self._commits += 1
                self._items += len(items)
                self._largest = max(self._largest, len(items))
            for n, (_, future) in enumerate(batch):
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome[n])
