"""PostgreSQL store figures (issue 17): durable appends through 1, 2 and 3 registry processes
sharing one database, beside the embedded store measured in the same run.

    PHT_TEST_POSTGRES=postgresql://... python bench/postgres_bench.py [--events 3000]

Each process opens the ledger (its own data directory; the database's schema is shared), signs
its share of ~300-byte task events up front, waits for the others, then appends them from 8
threads (signature check, rules, sequencing under the coordination row, commit). The figure is
the total events over the wall time from the common start to the last process done.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from ledger.bodies import Task
from ledger.store.ledger import Ledger
from tests.ledger.factory import World
from tests.postgres_db import with_schema

THREADS = 8


def _append_share(
    world: World, root: Path, url: str | None, share: int, seed: int, start: object, done: object
) -> None:
    ledger = Ledger.open(root, log_key=world.log_key, store_url=url, time_window=None)
    events = [
        world.sign(
            "alice", Task(image="x/avg:1", sites=("site-a",), config={"n": seed * 10**6 + n})
        )
        for n in range(share)
    ]
    start.wait()  # type: ignore[attr-defined]
    chunks = [events[i::THREADS] for i in range(THREADS)]
    threads = [threading.Thread(target=lambda c=c: [ledger.append(e) for e in c]) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.put(time.perf_counter())  # type: ignore[attr-defined]
    ledger.close()


def run(world: World, tmp: Path, url: str | None, processes: int, events: int) -> float:
    genesis = world.sign("admin", world.genesis_body())
    Ledger.create(tmp / "p0", genesis=genesis, log_key=world.log_key, store_url=url).close()
    ctx = mp.get_context("fork")
    start, done = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [
        ctx.Process(
            target=_append_share,
            args=(world, tmp / f"p{n}", url, events // processes, n, start, done),
        )
        for n in range(processes)
    ]
    for p in procs:
        p.start()
    start.wait()
    began = time.perf_counter()
    ends = [done.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return (events // processes * processes) / (max(ends) - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    dsn = os.environ["PHT_TEST_POSTGRES"]
    world = World()
    print(f"durable appends, {args.events} signed task events, {THREADS} threads per process:")
    with tempfile.TemporaryDirectory() as tmp:
        rate = run(world, Path(tmp) / "embedded", None, 1, args.events)
        print(f"  embedded store, 1 process:    {rate:7.0f} appends/s (baseline)")
    for processes in (1, 2, 3):
        schema = f"pht_bench_{secrets.token_hex(4)}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                url = with_schema(dsn, schema)
                got = run(world, Path(tmp), url, processes, args.events)
                print(f"  PostgreSQL, {processes} process(es):   {got:7.0f} appends/s")
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
