"""GroupCommitter: many submitters share one commit; results and failures reach each of them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ledger.errors import StoreError
from ledger.groupcommit import GroupCommitter
from ledger.store import EntryStore


class SlowLog:
    """A commit function that takes a while, like an fsync, and remembers its batches."""

    def __init__(self, delay: float = 0.002) -> None:
        self.delay = delay
        self.batches: list[list[tuple[int, int]]] = []

    def commit(self, batch: list[tuple[int, int]]) -> list[str]:
        time.sleep(self.delay)
        self.batches.append(list(batch))
        return [f"ok {t}/{i}" for t, i in batch]


def run_threads(count: int, target: object) -> None:
    threads = [threading.Thread(target=target, args=(t,)) for t in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_eight_threads_share_commits_and_get_their_own_results() -> None:
    log = SlowLog()
    committer: GroupCommitter[tuple[int, int], str] = GroupCommitter(log.commit)
    results: dict[int, list[str]] = {}

    def submitter(t: int) -> None:
        results[t] = [committer.submit((t, i)) for i in range(100)]

    run_threads(8, submitter)
    committer.close()
    for t in range(8):
        assert results[t] == [f"ok {t}/{i}" for i in range(100)]
    committed = [item for batch in log.batches for item in batch]
    assert sorted(committed) == [(t, i) for t in range(8) for i in range(100)]
    for t in range(8):  # each submitter's items were committed in its order
        assert [i for s, i in committed if s == t] == list(range(100))
    stats = committer.stats
    assert stats.items == 800
    assert stats.commits == len(log.batches)
    assert stats.commits < 800 / 3  # commits were shared
    assert stats.largest > 1


class Outcomes:
    """Submissions on their own threads, each outcome (result or exception) kept by item."""

    def __init__(self, committer: GroupCommitter[int, int]) -> None:
        self.committer = committer
        self.outcomes: dict[int, object] = {}
        self.threads: list[threading.Thread] = []

    def submit(self, item: int) -> None:
        def run() -> None:
            try:
                self.outcomes[item] = self.committer.submit(item)
            except BaseException as exc:
                self.outcomes[item] = exc

        thread = threading.Thread(target=run)
        self.threads.append(thread)
        thread.start()

    def join(self) -> dict[int, object]:
        for thread in self.threads:
            thread.join(5)
            assert not thread.is_alive(), "a submitter never returned"
        return self.outcomes


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_failed_commit_reaches_every_submitter_of_the_batch() -> None:
    release = threading.Event()
    failure = OSError("disk full")
    batches: list[list[int]] = []

    def commit(batch: list[int]) -> list[int]:
        batches.append(batch)
        if batch == [0]:
            release.wait(5)  # hold the first commit while the others queue up
            return [0]
        if len(batches) == 2:
            raise failure
        return batch

    committer: GroupCommitter[int, int] = GroupCommitter(commit)
    first = Outcomes(committer)
    first.submit(0)
    wait_until(lambda: batches, "the first commit")
    queued = Outcomes(committer)
    for n in range(1, 9):
        queued.submit(n)
        wait_until(lambda n=n: len(committer._queue) == n + 1, f"item {n} to queue")
    release.set()
    assert first.join() == {0: 0}
    assert queued.join() == {n: failure for n in range(1, 9)}
    assert batches[1] == list(range(1, 9))  # one batch, one failure for all
    assert committer.submit(42) == 42  # the next batch is committed as usual
    committer.close()


def test_wrong_result_count_is_an_error_for_the_batch() -> None:
    committer: GroupCommitter[int, int] = GroupCommitter(lambda batch: [])
    with pytest.raises(StoreError, match="expected 1 results, found 0"):
        committer.submit(1)
    committer.close()


def test_a_lone_submitter_commits_in_its_own_thread() -> None:
    threads: list[threading.Thread] = []

    def commit(batch: list[int]) -> list[int]:
        threads.append(threading.current_thread())
        return [n * 2 for n in batch]

    committer: GroupCommitter[int, int] = GroupCommitter(commit)
    assert [committer.submit(n) for n in range(5)] == [0, 2, 4, 6, 8]
    assert threads == [threading.current_thread()] * 5
    assert committer.stats.commits == 5


def test_close_waits_for_what_was_queued_then_refuses() -> None:
    release = threading.Event()
    committed: list[int] = []

    def commit(batch: list[int]) -> list[int]:
        release.wait(5)
        committed.extend(batch)
        return batch

    committer: GroupCommitter[int, int] = GroupCommitter(commit, max_batch=3)
    submitters = Outcomes(committer)
    for n in range(10):
        submitters.submit(n)
        wait_until(lambda n=n: len(committer._queue) == n + 1, f"item {n} to queue")
    closer = threading.Thread(target=committer.close)
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive()  # still waiting: nothing is committed yet
    release.set()
    closer.join(5)
    assert not closer.is_alive()
    assert submitters.join() == {n: n for n in range(10)}
    assert committed == list(range(10))
    assert committer.stats.largest == 3
    with pytest.raises(StoreError, match="closed"):
        committer.submit(11)
    committer.close()  # idempotent


@pytest.mark.parametrize("when", ["while queued", "when due to lead"])
def test_an_interrupted_submitter_does_not_stall_the_queue(when: str) -> None:
    """A submitter interrupted while it waits (KeyboardInterrupt reaches the main thread) leaves
    its item queued; the item is still committed, and the submitters after it still return."""
    release = threading.Event()
    committed: list[int] = []

    def commit(batch: list[int]) -> list[int]:
        if batch == [0]:
            release.wait(5)
        committed.extend(batch)
        return batch

    committer: GroupCommitter[int, int] = GroupCommitter(commit, max_batch=1)
    first = Outcomes(committer)
    first.submit(0)
    wait_until(lambda: len(committer._queue) == 1, "the first commit")

    class Interrupt(BaseException):
        pass

    waiting = threading.Condition.wait

    def interrupted_wait(self: threading.Condition, timeout: float | None = None) -> bool:
        if threading.current_thread().name != "interrupted":
            return waiting(self, timeout)
        if when == "when due to lead":
            waiting(self, timeout)  # woken as the next leader, then interrupted
        raise Interrupt

    seen: list[BaseException] = []

    def interrupted() -> None:
        try:
            committer.submit(1)
        except Interrupt as exc:
            seen.append(exc)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Condition, "wait", interrupted_wait)
        thread = threading.Thread(target=interrupted, name="interrupted")
        thread.start()
        wait_until(lambda: len(committer._queue) == 2, "the interrupted submitter to queue")
        later = Outcomes(committer)
        later.submit(2)
        wait_until(lambda: len(committer._queue) == 3, "the submitter after it to queue")
        release.set()
        thread.join(5)
        assert first.join() == {0: 0}
        assert later.join() == {2: 2}
    assert seen and isinstance(seen[0], Interrupt)
    assert committed == [0, 1, 2]  # the interrupted submitter's item is committed all the same
    committer.close(timeout=5)
    assert not committer._queue


def test_group_commit_into_the_entry_store(tmp_path: Path) -> None:
    with EntryStore.open(tmp_path) as store:

        def commit(batch: list[bytes]) -> list[None]:
            store.append_batch(batch)
            return [None] * len(batch)

        committer: GroupCommitter[bytes, None] = GroupCommitter(commit)

        def submitter(t: int) -> None:
            for i in range(50):
                committer.submit(b'{"t":%d,"i":%d}' % (t, i))

        run_threads(8, submitter)
        committer.close()
        assert store.count == 400
        assert committer.stats.commits < 400  # fewer fsyncs than entries
        stored = list(store.iter_from(0))
    for t in range(8):
        assert [p for p in stored if p.startswith(b'{"t":%d,' % t)] == [
            b'{"t":%d,"i":%d}' % (t, i) for i in range(50)
        ]
