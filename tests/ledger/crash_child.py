"""Child process for test_crash.py: append from 4 threads until killed.

Usage: crash_child.py DATA_DIR BASE

Opens the store, prints ``ready <count>``, then each of 4 threads appends payloads
``{"n":<n>,"t":<thread>}`` one at a time through a GroupCommitter (numbers from BASE up, unique
across threads) and prints ``ack <n> <thread>`` only after its submit returned, i.e. after the
entry was durable. It runs until the parent SIGKILLs it.
"""

from __future__ import annotations

import itertools
import sys
import threading
from pathlib import Path

from ledger.store.entries import EntryStore
from ledger.store.groupcommit import GroupCommitter


def main() -> None:
    data_dir, base = Path(sys.argv[1]), int(sys.argv[2])
    store = EntryStore.open(data_dir)

    def commit(batch: list[bytes]) -> list[None]:
        store.append_batch(batch)
        return [None] * len(batch)

    committer: GroupCommitter[bytes, None] = GroupCommitter(commit)
    numbers = itertools.count(base)
    numbers_lock = threading.Lock()
    out_lock = threading.Lock()

    def worker(thread: int) -> None:
        while True:
            with numbers_lock:
                n = next(numbers)
            committer.submit(b'{"n":%d,"t":%d}' % (n, thread))
            with out_lock:
                sys.stdout.write(f"ack {n} {thread}\n")
                sys.stdout.flush()

    print(f"ready {store.count}", flush=True)
    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
