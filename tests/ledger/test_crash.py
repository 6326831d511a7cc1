"""Kill a real writer process with SIGKILL at random moments: nothing acknowledged is lost.

The child (crash_child.py) appends from 4 threads through GroupCommitter + EntryStore and prints
each sequence number only after its append returned. After every kill the parent reopens the
store and checks: every acknowledged payload is present; each thread's payloads are in its
submission order; at most the one in-flight, unacknowledged payload per thread is there beyond
the acknowledged ones; every record verifies (no torn record survives open); and the next round
appends after them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from ledger.store.entries import EntryStore
from ledger.store.logfiles import LOG_NAME

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
ROUNDS = 24
SEED = 20261125


def run_round(data_dir: Path, base: int, delay: float) -> tuple[int, list[tuple[int, int]]]:
    """Start the child, kill it ``delay`` s after it is ready; return (count at its open, acks)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Unbuffered: a buffered readline() of the "ready" line may read acks that follow it into
    # its buffer, which communicate() (reading the pipe directly) then never sees; those acked
    # payloads would look unacknowledged ("thread N extra [...]" with two or more of them).
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        bufsize=0,
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        ready = child.stdout.readline().decode()
        assert ready.startswith("ready "), child.stderr.read().decode()
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err.decode()
    assert b"Traceback" not in err, err.decode()
    acks = []
    for line in out.decode().split("\n")[:-1]:  # a last line without "\n" is incomplete
        _, n, t = line.split()
        acks.append((int(n), int(t)))
    return int(ready.split()[1]), acks


def test_sigkill_never_loses_an_acknowledged_append(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    acked: set[int] = set()
    count = 0
    grew = 0
    for round_no in range(ROUNDS):
        base = round_no * 10_000_000
        delay = rng.uniform(0.020, 0.300)
        opened_at, acks = run_round(tmp_path, base, delay)
        assert opened_at == count
        acked.update(n for n, _ in acks)

        with EntryStore.open(tmp_path) as store:
            assert store.verify_records() == store.count  # no torn record after open
            assert (tmp_path / LOG_NAME).stat().st_size > 0 or store.count == 0
            new = [json.loads(p) for p in store.iter_from(count)]
            grew += store.count > count
            count = store.count
        present = {item["n"] for item in new}
        round_acks = {n for n, _ in acks}
        missing = round_acks - present
        assert not missing, f"round {round_no} (delay {delay:.3f}s): lost acked {missing}"
        by_thread: dict[int, list[int]] = defaultdict(list)
        for item in new:
            assert base <= item["n"] < base + 10_000_000
            by_thread[item["t"]].append(item["n"])
        for thread, numbers in by_thread.items():
            assert numbers == sorted(numbers), f"round {round_no}: thread {thread} out of order"
            unacked = [n for n in numbers if n not in round_acks]
            assert len(unacked) <= 1, f"round {round_no}: thread {thread} extra {unacked}"
            assert all(n == numbers[-1] for n in unacked)
    assert grew >= ROUNDS // 2, f"only {grew} of {ROUNDS} rounds appended anything"
    with EntryStore.open(tmp_path) as store:
        everything = {json.loads(p)["n"] for p in store.iter_from(0)}
    assert acked <= everything
