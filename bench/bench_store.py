"""Entry store benchmarks: group-commit throughput and open time of a large store.

    python bench/bench_store.py [--threads 8] [--events 20000] [--entries 1000000] [--dir /tmp]

Prints the figures and, as the house style asks, ratios against baselines measured in the same
run: group commit vs one fsync per event, and open (trusting the index) vs a full-scan rebuild.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from ledger.store.entries import EntryStore
from ledger.store.groupcommit import GroupCommitter
from ledger.store.logfiles import INDEX_NAME


def payload(n: int, size: int) -> bytes:
    head = b'{"n":%d,"pad":"' % n
    return head + b"x" * (size - len(head) - 2) + b'"}'


def bench_group_commit(root: Path, threads: int, events: int, size: int) -> None:
    per_thread = events // threads
    with EntryStore.open(root / "gc") as store:

        def commit(batch: list[bytes]) -> list[None]:
            store.append_batch(batch)
            return [None] * len(batch)

        committer: GroupCommitter[bytes, None] = GroupCommitter(commit)

        def submitter(t: int) -> None:
            for i in range(per_thread):
                committer.submit(payload(t * per_thread + i, size))

        workers = [threading.Thread(target=submitter, args=(t,)) for t in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        committer.close()
        stats = committer.stats
    grouped = stats.items / elapsed
    print(
        f"group commit: {threads} threads x {per_thread} x {size} B: {grouped:,.0f} events/s, "
        f"{stats.commits} commits, mean batch {stats.mean_batch:.1f}, largest {stats.largest}"
    )
    serial_events = min(events, 2000)
    with EntryStore.open(root / "serial") as store:
        start = time.perf_counter()
        for i in range(serial_events):
            store.append_batch([payload(i, size)])
        serial = serial_events / (time.perf_counter() - start)
    print(f"baseline, one fsync per event (1 thread): {serial:,.0f} events/s")
    print(f"ratio group/serial: {grouped / serial:.1f}x")


def bench_open(root: Path, entries: int, size: int) -> None:
    data_dir = root / "big"
    start = time.perf_counter()
    with EntryStore.open(data_dir) as store:
        for first in range(0, entries, 10_000):
            store.append_batch(
                [payload(n, size) for n in range(first, min(first + 10_000, entries))]
            )
    print(f"built {entries:,} records of {size} B in {time.perf_counter() - start:.1f} s")
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        store = EntryStore.open(data_dir)
        timings.append(time.perf_counter() - start)
        store.close()
    opened = min(timings)
    print(f"open (index trusted, tail checked): {opened * 1000:.1f} ms (best of 3)")
    with EntryStore.open(data_dir) as store:
        start = time.perf_counter()
        store.rebuild_index()
        rebuilt = time.perf_counter() - start
        start = time.perf_counter()
        store.verify_records()
        verified = time.perf_counter() - start
    print(
        f"baseline, rebuild_index (full scan): {rebuilt * 1000:.0f} ms; verify_records: "
        f"{verified * 1000:.0f} ms"
    )
    print(f"ratio open/full scan: {opened / rebuilt:.4f}")
    (data_dir / INDEX_NAME).unlink()
    start = time.perf_counter()
    with EntryStore.open(data_dir) as store:
        assert store.count == entries
    print(f"open with the index deleted (recovery scan): {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--event-size", type=int, default=300)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--entry-size", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pht-bench-store-", dir=args.dir))
    try:
        bench_group_commit(root, args.threads, args.events, args.event_size)
        if args.entries:
            bench_open(root, args.entries, args.entry_size)
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
