"""Ledger-core figures (issue 2), each beside a baseline measured in the same run.

    python bench/ledger_bench.py [--appends 20000] [--replay 100000] [--open 1000000]

1. Durable appends of signed ~300-byte task events, in process, 8 writer threads (signature,
   rules, group-committed fsync), beside the raw rate of one fsync'd write per event.
2. Replay verification of N entries (hashes, chain, signatures, rules), single process and with
   2 worker processes, as a ratio of the raw single-core Ed25519 verify rate.
3. Opening an existing ledger of M entries (tasks, their status and result events): seconds and
   peak resident memory of a fresh process; inclusion and consistency proof times at that size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crypto import SigningKey
from ledger.bodies import Output, Result, ResultState, Status, StatusState, Task
from ledger.events import SignedEvent
from ledger.store.ledger import Ledger
from ledger.verify import verify_ledger
from tests.ledger.factory import World


def _calls_per_second(call: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            call()
        count += 200
    return count / (time.perf_counter() - start)


def raw_verify_rate(seconds: float = 2.0) -> float:
    """Single-core Ed25519 verifies per second through ``crypto`` (libsodium, what PHT uses)."""
    key = SigningKey.generate()
    message = os.urandom(300)
    signature = key.sign(message)
    return _calls_per_second(lambda: key.public.verify(signature, message), seconds)


def openssl_verify_rate(seconds: float = 2.0) -> float:
    """The same through ``cryptography`` (OpenSSL), the library DESIGN names for ``crypto``:
    the rate the replay targets were set against before verification moved to libsodium."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = os.urandom(300)
    signature = key.sign(message)
    return _calls_per_second(lambda: public.verify(signature, message), seconds)


def raw_fsync_rate(directory: Path, events: int = 2000) -> float:
    path = directory / "raw.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    payload = os.urandom(300)
    start = time.perf_counter()
    for _ in range(events):
        os.write(fd, payload)
        os.fsync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    path.unlink()
    return events / elapsed


def task_event(world: World, n: int) -> SignedEvent:
    # ~300 bytes of canonical event
    return world.sign(
        "alice",
        Task(image="myconsortium/avg:1.2", sites=("site-a", "site-b"), config={"n": n}),
    )


def bench_appends(directory: Path, count: int, verify_rate: float) -> None:
    world = World()
    events = [task_event(world, n) for n in range(count)]
    size = len(events[0].event.canonical)
    ledger = Ledger.create(
        directory / "append",
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
    )
    barrier = threading.Barrier(9)

    def writer(chunk: list[SignedEvent]) -> None:
        barrier.wait()
        for signed in chunk:
            ledger.append(signed)

    threads = [threading.Thread(target=writer, args=(events[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start, cpu, times = time.perf_counter(), time.process_time(), os.times()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    system = os.times().system - times.system
    stats = ledger._committer.stats
    ledger.close()
    fsync = raw_fsync_rate(directory)
    rate = count / elapsed
    print(
        f"appends: {count} signed {size}-byte task events, 8 threads: {rate:,.0f} events/s "
        f"(mean batch {stats.mean_batch:.1f} per fsync); target >= 4,000/s"
    )
    print(f"         raw one-fsync-per-event rate here: {fsync:,.0f}/s -> {rate / fsync:.1f}x")
    print(
        f"         = {rate / verify_rate:.2f} of raw Ed25519 verify ({verify_rate:,.0f}/s; "
        f"4,000/s is 0.46 of an idle core's ~8,700/s); process CPU "
        f"{cpu / count * 1e6:.0f} us/event ({system / count * 1e6:.0f} in the kernel) over "
        f"{elapsed:.1f} s ({cpu / elapsed:.0%} of one core)"
    )


def build_ledger(directory: Path, count: int) -> tuple[World, list[bytes]]:
    """A data directory (with its ``log.key``, ready for ``pht serve``) of ``count`` entries:
    genesis, then tasks each followed by a status and a result. Returns the records."""
    world = World()
    ledger = Ledger.create(
        directory,
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        time_window=None,  # synthetic history: its events are dated ms apart, far past now
    )
    world.log_key.save(directory / "log.key")
    batch: list[SignedEvent] = []
    produced = 1
    n = 0
    while produced < count:
        task = task_event(world, n)
        n += 1
        group = [
            task,
            world.sign("site-a", Status(task=task.event.id, state=StatusState.STARTED)),
            world.sign(
                "site-a",
                Result(
                    task=task.event.id,
                    state=ResultState.COMPLETED,
                    exit_code=0,
                    outputs=(Output(name="out.json", sha256="ab" * 32, size=120),),
                ),
            ),
        ]
        batch.extend(group[: count - produced])
        produced += len(group[: count - produced])
        if len(batch) >= 5000:
            ledger._commit(batch)  # bulk load through the same commit path
            batch = []
    if batch:
        ledger._commit(batch)
    records = ledger.entries_bytes(0, ledger.size)
    ledger.close()
    return world, records


def build_entries(count: int) -> list[bytes]:
    """``count`` entries as in :func:`build_ledger`, without keeping the directory."""
    directory = Path(tempfile.mkdtemp(prefix="pht-bench-"))
    try:
        return build_ledger(directory / "d", count)[1]
    finally:
        shutil.rmtree(directory)


def bench_replay(count: int, verify_rate: float) -> None:
    print(f"replay: building {count:,} entries ...", flush=True)
    records = build_entries(count)
    openssl = openssl_verify_rate()
    start = time.perf_counter()
    verify_ledger(records)
    single = count / (time.perf_counter() - start)
    start = time.perf_counter()
    verify_ledger(records, workers=2)
    double = count / (time.perf_counter() - start)
    libsodium = (verify_rate + raw_verify_rate()) / 2  # before and after, against drift
    print(
        f"replay: {count:,} entries, 1 process: {single:,.0f}/s = "
        f"{single / libsodium:.0%} of raw libsodium verify ({libsodium:,.0f}/s), "
        f"{single / openssl:.0%} of raw OpenSSL verify ({openssl:,.0f}/s); target >= 80%"
    )
    print(
        f"        2 workers: {double:,.0f}/s = {double / libsodium:.2f}x raw libsodium, "
        f"{double / openssl:.2f}x raw OpenSSL; target >= 1.6x"
    )
    per_entry = 1e6 / single - 1e6 / libsodium
    print(
        f"        per entry: {1e6 / libsodium:.0f} us verify + {per_entry:.0f} us parsing, "
        "hashing, chain and rules"
    )


OPEN_CHILD = """
import resource, sys, time
from pathlib import Path
from crypto import SigningKey
from ledger.store.ledger import Ledger
from tests.ledger.factory import World
world = World()
start = time.perf_counter()
ledger = Ledger.open(Path(sys.argv[1]), log_key=world.log_key)
opened = time.perf_counter() - start
size = ledger.size
times = []
for i in range(200):
    t = time.perf_counter(); ledger.inclusion_proof((i * 7919) % size, size)
    times.append(time.perf_counter() - t)
ctimes = []
for i in range(200):
    t = time.perf_counter(); ledger.consistency_proof(1 + (i * 7919) % (size - 1), size)
    ctimes.append(time.perf_counter() - t)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
times.sort(); ctimes.sort()
# What the open spends checking the snapshot's entries (one hash of the log), against hashing
# every entry and comparing it with its leaf (what the open falls back to on a mismatch).
from ledger.store.integrity import first_damage
t = time.perf_counter(); ledger._store.start_digest(size); digest = time.perf_counter() - t
t = time.perf_counter(); assert first_damage(ledger._store, ledger._tree, size) is None
leaves = time.perf_counter() - t
# Reading pages in process: as before the check (CRC per record), as shipped (framing, leaf
# hash), and framing only (the check switched off); microseconds per page, best of 5 passes.
def per_page(read, limit):
    best = []
    for _ in range(5):
        t = time.perf_counter()
        for first in range(0, 100 * limit, limit):
            read(first, limit)
        best.append((time.perf_counter() - t) / 100 * 1e6)
    return min(best)
reads = []
for limit in (100, 1000):
    reads += [
        per_page(lambda f, n: ledger._store.read_range(f, f + n), limit),
        per_page(ledger.entries_bytes, limit),
        per_page(lambda f, n: ledger._store.read_range(f, f + n, checksums=False), limit),
    ]
print(f"{size} {opened:.3f} {rss:.0f} {times[100]*1e3:.3f} {times[-1]*1e3:.3f} "
      f"{ctimes[100]*1e3:.3f} {ctimes[-1]*1e3:.3f} {digest:.3f} {leaves:.3f} "
      + " ".join(f"{r:.0f}" for r in reads))
ledger._committer.close(); ledger._store.close()
"""


SITES = ("site-a", "site-b", "site-c")


def task_with_three_sites(world: World, n: int) -> list[SignedEvent]:
    """A task for three sites and each site's accepted, started and result: 10 entries."""
    task = world.sign("alice", Task(image="myconsortium/avg:1.2", sites=SITES, config={"n": n}))
    events = [task]
    for state in (StatusState.ACCEPTED, StatusState.STARTED):
        events += [world.sign(site, Status(task=task.event.id, state=state)) for site in SITES]
    outputs = (Output(name="out.json", sha256="ab" * 32, size=120),)
    events += [
        world.sign(
            site,
            Result(task=task.event.id, state=ResultState.COMPLETED, exit_code=0, outputs=outputs),
        )
        for site in SITES
    ]
    return events


def bench_open(count: int) -> None:
    print(
        f"open: building a {count:,}-entry ledger ({count // 10:,} tasks for 3 sites) ...",
        flush=True,
    )
    world = World()
    directory = Path(tempfile.mkdtemp(prefix="pht-bench-open-"))
    try:
        ledger = Ledger.create(
            directory / "d",
            genesis=world.sign("admin", world.genesis_body()),
            log_key=world.log_key,
            time_window=None,  # synthetic history: its events are dated ms apart, far past now
        )
        built = 1
        n = 0
        while built < count:
            batch: list[SignedEvent] = []
            while len(batch) < 6000 and built + len(batch) < count:
                batch += task_with_three_sites(world, n)
                n += 1
            batch = batch[: count - built]
            ledger._commit(batch)
            built += len(batch)
            if built % 60000 < 6000:
                print(f"  {built:,} / {count:,}", flush=True)
        ledger.close()
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(
            [sys.executable, "-c", OPEN_CHILD, str(directory / "d")],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
        ).stdout.split()
        size, opened, rss, inc50, incmax, con50, conmax, digest, leaves = out[:9]
        reads = [float(r) for r in out[9:]]
        print(
            f"open: {int(size):,} entries in {float(opened):.2f} s (target <= 3 s), "
            f"peak RSS {rss} MB (target <= 512 MB)"
        )
        print(
            f"      inclusion proof p50 {inc50} ms, max {incmax} ms; consistency proof p50 "
            f"{con50} ms, max {conmax} ms (target <= 5 ms)"
        )
        print(
            f"      of the open, {float(digest):.2f} s hash the log against the snapshot's "
            f"digest ({float(digest) / float(opened):.0%}); hashing every entry against its leaf "
            f"instead takes {float(leaves):.2f} s ({float(leaves) / float(digest):.1f}x)"
        )
        for n, limit in enumerate((100, 1000)):
            today, checked, plain = reads[3 * n : 3 * n + 3]
            print(
                f"      reading a page of {limit} in process: {today:.0f} us as before the "
                f"check (CRC per record), {checked:.0f} us checked against the leaf hashes "
                f"({today / checked:.2f}x the rate), {plain:.0f} us framing only (the check "
                f"itself: {plain / checked:.2f}x)"
            )
    finally:
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appends", type=int, default=20000)
    parser.add_argument("--replay", type=int, default=100000)
    parser.add_argument("--open", type=int, default=1000000)
    args = parser.parse_args()
    rate = raw_verify_rate()
    print(f"baseline: raw single-core Ed25519 verify (libsodium) {rate:,.0f}/s")
    with tempfile.TemporaryDirectory(prefix="pht-bench-", dir=os.environ.get("TMPDIR")) as tmp:
        if args.appends:
            bench_appends(Path(tmp), args.appends, rate)
    if args.replay:
        bench_replay(args.replay, rate)
    if args.open:
        bench_open(args.open)


if __name__ == "__main__":
    main()
