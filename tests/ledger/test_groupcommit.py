"""GroupCommitter: many submitters share one commit; results and failures reach each of them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ledger.errors import StoreError
from ledger.store.entries import EntryStore
from ledger.store.groupcommit import GroupCommitter


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
    first = committer.submit_async(0)
    while not batches:
        time.sleep(0.001)
    queued = [committer.submit_async(n) for n in range(1, 9)]
    release.set()
    assert first.result(5) == 0
    for future in queued:
        assert future.exception(5) is failure
    assert batches[1] == list(range(1, 9))  # one batch, one failure for all
    assert committer.submit(42, timeout=5) == 42  # the committer goes on
    committer.close()


def test_wrong_result_count_is_an_error_for_the_batch() -> None:
    committer: GroupCommitter[int, int] = GroupCommitter(lambda batch: [])
    with pytest.raises(StoreError, match="expected 1 results, found 0"):
        committer.submit(1, timeout=5)
    committer.close()


def test_close_commits_what_was_queued_then_refuses() -> None:
    release = threading.Event()
    committed: list[int] = []

    def commit(batch: list[int]) -> list[None]:
        release.wait(5)
        committed.extend(batch)
        return [None] * len(batch)

    committer: GroupCommitter[int, None] = GroupCommitter(commit, max_batch=3)
    futures = [committer.submit_async(n) for n in range(10)]
    closer = threading.Thread(target=committer.close)
    closer.start()
    release.set()
    closer.join(5)
    assert not closer.is_alive()
    assert all(f.done() and f.exception() is None for f in futures)
    assert committed == list(range(10))
    with pytest.raises(StoreError, match="closed"):
        committer.submit(11)
    committer.close()  # idempotent


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


def test_a_lone_worker_thread_commits_inline_and_the_main_thread_hands_off() -> None:
    threads: list[str] = []

    def commit(batch: list[int]) -> list[int]:
        threads.append(threading.current_thread().name)
        return [n + 1 for n in batch]

    committer: GroupCommitter[int, int] = GroupCommitter(commit, name="committer")
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(committer.submit(1)), name="worker")
    worker.start()
    worker.join(5)
    assert committer.submit(2, timeout=5) == 3  # from the main thread
    committer.close()
    assert results == [2]
    assert threads == ["worker", "committer"]


def test_inline_and_handed_off_commits_never_overlap_and_keep_each_submitters_order() -> None:
    active = 0
    overlaps = 0
    guard = threading.Lock()
    committed: list[tuple[int, int]] = []

    def commit(batch: list[tuple[int, int]]) -> list[str]:
        nonlocal active, overlaps
        with guard:
            active += 1
            overlaps += active > 1
        time.sleep(0.0005)
        committed.extend(batch)
        with guard:
            active -= 1
        return [f"{t}/{i}" for t, i in batch]

    committer: GroupCommitter[tuple[int, int], str] = GroupCommitter(commit)
    results: dict[int, list[str]] = {}

    def submitter(t: int) -> None:
        results[t] = [committer.submit((t, i)) for i in range(60)]

    workers = [threading.Thread(target=submitter, args=(t,)) for t in range(1, 6)]
    for worker in workers:
        worker.start()
    submitter(0)  # the main thread takes part too
    for worker in workers:
        worker.join(10)
    committer.close()
    assert overlaps == 0
    for t in range(6):
        assert results[t] == [f"{t}/{i}" for i in range(60)]
        assert [i for s, i in committed if s == t] == list(range(60))
    assert committer.stats.items == 360


def test_close_waits_for_an_inline_commit() -> None:
    started, release = threading.Event(), threading.Event()

    def commit(batch: list[int]) -> list[int]:
        started.set()
        release.wait(5)
        return batch

    committer: GroupCommitter[int, int] = GroupCommitter(commit)
    worker = threading.Thread(target=committer.submit, args=(7,))
    worker.start()
    assert started.wait(5)
    closer = threading.Thread(target=committer.close)
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive()  # the inline commit is still running
    release.set()
    closer.join(5)
    worker.join(5)
    assert not closer.is_alive() and not worker.is_alive()
    assert committer.stats.items == 1
