"""Replica figures (issue 17): several ``pht serve`` processes on one PostgreSQL ledger behind
nginx, each figure beside a baseline measured in the same run.

    PHT_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5433/pht_test \\
        python bench/replica_bench.py [--rounds 3] [--duration 5] [--only appends|long-poll|crowd]

1. **Appends** (``appends``). ``wrk`` sends pre-signed task appends over ``--connections``
   keep-alive connections to (a) the bare Falcon-on-waitress append+fsync endpoint of
   ``bench/api_bench.py`` (the baseline), (b) nginx in front of 1 replica, (c) nginx in front of
   2 replicas (``examples/deploy/nginx-replicas.conf``, rendered as the replica tests render it;
   each set-up on a fresh PostgreSQL schema). The three alternate within each round, in a rotating
   order. Every request carries its own signature and nonce: how many to sign per run comes from
   a short calibration run against the bare endpoint (its rate x the duration x ``--margin``), and
   a run that used more than were signed is flagged. Targets: 2 replicas >= 0.65 of bare and
   >= 1.3x 1 replica.
2. **Long-poll across replicas** (``long-poll``). ``--followers`` follower processes long-poll
   replica B while appends go one at a time through replica A; the baseline is the same with the
   appends through B itself. Latency from the append's 2xx (and from its send) to each follower
   having the entry. Targets: p50 <= 15 ms, p99 <= 60 ms (across).
3. **A crowd of followers** (``crowd``). ``--crowd`` followers (threads in ``--crowd-processes``
   processes) long-poll through nginx while ``wrk`` appends over ``--connections`` connections;
   the baseline is the same ``wrk`` run without followers, alternating. Notification latency is
   from the entry's ``received`` time (stamped by the replica as its batch was sequenced) to the
   follower having the page holding it. A follower that finds no long-poll slot free gets an
   empty page with ``Retry-After`` and comes back after it, as the site client does; those answers
   are counted. Repeated for each ``--crowd-threads`` (waitress threads per replica). Targets:
   p99 <= 100 ms, append rate >= 0.9x without followers.

Niceness: the followers of 3. run at ``--follower-nice`` (default 19). They stand for sites on
machines of their own, and 200 Python clients re-polling as fast as entries come would otherwise
take most of a small host's CPU from the registry they measure. ``wrk`` runs at ``--nice``
(default 0), the same for every set-up and its baseline: a C client that costs little, and a
niced one starves behind whatever else runs on a shared host, which would cap every set-up alike.
Everything runs on 127.0.0.1; servers are subprocesses, schemas are dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.client.registry import Client
from api.client.transport import SignedTransport, retry_after
from api.errors import ProblemError
from bench.api_bench import (
    add_wrk_arguments,
    cpu_seconds,
    free_port,
    init_registry,
    new_task,
    notification_latencies,
    percentile,
    presigned_requests,
    run_wrk,
    start_bare,
)
from crypto import SigningKey
from tests.api.registry_process import RegistryProcess
from tests.api.replica_cluster import nginx_in_front
from tests.postgres_db import ENV, HINT, fresh_schema


@dataclass(frozen=True)
class Setup:
    """Replicas of one ledger; ``url`` is what clients call (nginx, or replica 0 without it)."""

    url: str
    replicas: list[RegistryProcess]
    keys: dict[str, SigningKey]
    nginx_pid: int | None

    def pids(self) -> list[int]:
        """The replicas', and nginx's master and workers' process ids."""
        pids = [r.proc.pid for r in self.replicas if r.proc is not None]
        if self.nginx_pid is not None:
            children = Path(f"/proc/{self.nginx_pid}/task/{self.nginx_pid}/children").read_text()
            pids += [self.nginx_pid, *map(int, children.split())]
        return pids


@contextmanager
def replica_set(root: Path, count: int, threads: int, *, nginx: bool = True) -> Iterator[Setup]:
    """``count`` replicas (``threads`` waitress threads each) on a fresh schema, behind nginx
    unless ``nginx`` is False (then clients sign for, and call, each replica directly)."""
    with fresh_schema() as dsn:
        data, keys = init_registry(root, store=dsn)
        port = free_port()
        public = f"http://127.0.0.1:{port}" if nginx else None
        replicas = []
        for n in range(count):
            own = data if n == 0 else root / f"replica-{n}" / "data"
            if n:
                own.mkdir(parents=True)
                shutil.copy2(data / "log.key", own / "log.key")
            log = root / f"serve-{n}.log"
            replicas.append(
                RegistryProcess(own, store=dsn, public_url=public, threads=threads, log=log)
            )
        try:
            for replica in replicas:
                replica.start()
            time.sleep(1.1)  # requests signed in a registry's first second are refused by design
            if not nginx:
                yield Setup(replicas[0].url, replicas, keys, None)
                return
            (root / "nginx").mkdir()
            with nginx_in_front(root / "nginx", [r.url for r in replicas], port) as url:
                pid = int((root / "nginx" / "nginx.pid").read_text())
                yield Setup(url, replicas, keys, pid)
        finally:
            for replica in replicas:
                replica.stop()


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def host_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole host so far (/proc/stat; idle and iowait are idle)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def wrk_run(
    url: str, key: SigningKey, count: int, pids: list[int], root: Path, args: Any
) -> dict[str, Any]:
    """Sign ``count`` appends for ``url``, run wrk; the server CPU (ms) per request of ``pids``."""
    requests_file = root / "requests.bin"
    presigned_requests(url, key, count, requests_file)
    before, host = cpu_of(pids), host_ticks()
    got = run_wrk(url, requests_file, args.connections, args.duration, args.wrk_threads, args.nice)
    got["cpu_ms"] = (cpu_of(pids) - before) * 1000 / max(1, got["requests"])
    busy, total = (after - then for after, then in zip(host_ticks(), host, strict=True))
    got["host_busy"] = busy / max(1, total)
    got["ran_out"] = got["requests"] > count
    return got


def calibrate(url: str, name: str, key: SigningKey, root: Path, args: Any) -> int:
    """How many requests to sign per run: the rate of ``url`` (the fastest set-up of the run) in
    a 2 s run of ``--requests`` requests x the duration x ``--margin``. (A replayed request is
    refused, so a registry faster than ``--requests`` / 2 s is counted at that rate here: still
    ``--margin`` x ``--requests`` / 2 per second of a run.)"""
    requests_file = root / "calibrate.bin"
    presigned_requests(url, key, args.requests, requests_file)
    got = run_wrk(url, requests_file, args.connections, 2, args.wrk_threads, args.nice)
    rate = max(got["rate"], got["requests"] / got["seconds"] if got["non2xx"] else 0)
    count = max(int(args.requests), int(rate * args.duration * args.margin))
    print(
        f"  calibration: {name} {rate:.0f} req/s; signing {count} requests per run "
        f"({args.margin:g}x its rate x {args.duration} s)"
    )
    return count


def row(cells: list[str], widths: list[int]) -> str:
    return "  " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))


# ---- 1. appends


def bench_appends(root: Path, args: Any) -> None:
    root.mkdir(parents=True)
    print(
        f"\n1. signed appends, {args.connections} keep-alive connections, {args.duration} s per "
        f"run, wrk at nice {args.nice}; replicas on PostgreSQL behind nginx, "
        f"{args.threads} waitress threads each"
    )
    port = free_port()
    bare = start_bare(port, root / "bare.log", args.threads, root / "bare-serve.log")
    bare_url = f"http://127.0.0.1:{port}"
    rounds: list[dict[str, Any]] = []
    with ExitStack() as stack:
        stack.callback(bare.stop)
        one = stack.enter_context(replica_set(root / "one", 1, args.threads))
        two = stack.enter_context(replica_set(root / "two", 2, args.threads))
        count = calibrate(bare_url, "bare endpoint", two.keys["alice"], root, args)
        targets = {
            "bare": (bare_url, two.keys["alice"], [bare.proc.pid]),
            "1 replica": (one.url, one.keys["alice"], one.pids()),
            "2 replicas": (two.url, two.keys["alice"], two.pids()),
        }
        names = list(targets)
        for n in range(args.rounds):
            results: dict[str, Any] = {}
            for name in names[n % 3 :] + names[: n % 3]:
                url, key, pids = targets[name]
                results[name] = wrk_run(url, key, count, pids, root, args)
            rounds.append(results)
    widths = [7, 22, 22, 22, 8, 7]
    head = ["round", "bare req/s (p50)", "1 replica req/s (p50)", "2 replicas req/s (p50)"]
    print(row([*head, "2r/bare", "2r/1r"], widths))
    for n, got in enumerate(rounds, 1):
        cells = [f"{got[k]['rate']:.0f} ({got[k]['p50']})" for k in targets]
        ratios = [got["2 replicas"]["rate"] / got[k]["rate"] for k in ("bare", "1 replica")]
        print(row([str(n), *cells, *(f"{r:.2f}" for r in ratios)], widths))
    median_bare = statistics.median(g["2 replicas"]["rate"] / g["bare"]["rate"] for g in rounds)
    median_one = statistics.median(g["2 replicas"]["rate"] / g["1 replica"]["rate"] for g in rounds)
    print(
        f"  median: 2 replicas = {median_bare:.2f} of bare (target >= 0.65), "
        f"{median_one:.2f}x 1 replica (target >= 1.3)"
    )
    cpu = {k: statistics.median(g[k]["cpu_ms"] for g in rounds) for k in targets}
    print(
        "  server CPU per request (median; replicas + nginx, PostgreSQL not counted): "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in cpu.items())
    )
    busy = {k: statistics.median(g[k]["host_busy"] for g in rounds) for k in targets}
    print(
        "  host CPU busy during the runs (median, everything on the host): "
        + ", ".join(f"{k} {v:.0%}" for k, v in busy.items())
    )
    for n, got in enumerate(rounds, 1):
        for name, one_run in got.items():
            if one_run["non2xx"] or one_run["ran_out"] or one_run["socket_errors"]:
                print(
                    f"  WARNING round {n} {name}: {one_run['non2xx']} non-2xx, socket errors "
                    f"{one_run['socket_errors'] or 'none'}"
                    + ("; wrk ran out of pre-signed requests: raise --margin" * one_run["ran_out"])
                )


# ---- 2. long-poll across replicas


def bench_long_poll(root: Path, args: Any) -> None:
    threads = max(args.threads, args.followers + 8)  # a waiting slot for every follower on B
    with replica_set(root / "poll", 2, threads, nginx=False) as setup:
        a, b = (r.url for r in setup.replicas)
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for name, append_url in (("across (A -> B)", a), ("same (B -> B)", b)):
                got = notification_latencies(
                    append_url, b, setup.keys, args.followers, args.appends
                )
                runs.setdefault(name, []).append(got)
    print(
        f"\n2. long-poll notification, {args.followers} follower processes on replica B "
        f"({threads} waitress threads), {args.appends} appends one at a time per run, "
        f"{args.rounds} runs each"
    )
    widths = [16, 11, 11, 11, 11, 11, 11]
    head = ["appends", "deliveries", "2xx p50", "2xx p99", "sent p50", "sent p99", "2xx max"]
    print(row(head, widths))
    for name, each in runs.items():
        acked = sorted(x for g in each for x in g["acked"])
        sent = sorted(x for g in each for x in g["sent"])
        expected = sum(g["expected"] for g in each)
        cells = [
            f"{len(acked)}/{expected}",
            *(f"{v:.1f} ms" for v in (statistics.median(acked), percentile(acked, 0.99))),
            *(f"{v:.1f} ms" for v in (statistics.median(sent), percentile(sent, 0.99))),
            f"{acked[-1]:.1f} ms",
        ]
        print(row([name, *cells], widths))
    for name, each in runs.items():
        slow = [(index, count) for g in each for index, count in sorted(g["slow"].items())]
        if slow:
            print(
                f"  {name}: entries some follower had > 500 ms after the 2xx (index: how many of "
                f"the {args.followers} followers): " + ", ".join(f"{i}: {c}" for i, c in slow)
            )
    print(
        "  targets (across): p50 <= 15 ms, p99 <= 60 ms; '2xx': from the appender's 2xx (a "
        "delivery before it counts as 0); 'sent': from the POST being sent"
    )


# ---- 3. a crowd of followers while appends run


def _next_of(content: bytes) -> int:
    """``next`` of an entries page (api.wire.pages: it follows the entries), without parsing."""
    return int(content.rsplit(b'"next":', 1)[1].split(b",", 1)[0])


def _crowd_process(
    url: str, pems: list[bytes], start: int, wait: int, nice: int, stop: Any, out: Any
) -> None:
    """Threads, one per key in ``pems``, each a follower long-polling from ``start`` until
    ``stop``; reports each follower's pages (wall time got, from, next) and its no-slot answers."""
    os.nice(nice)
    results: list[tuple[list[tuple[float, int, int]], int, int, int]] = []
    lock = threading.Lock()

    def follow(pem: bytes) -> None:
        pages: list[tuple[float, int, int]] = []
        refused = polls = behind = 0
        transport = SignedTransport(url, SigningKey.from_pem(pem), timeout=20)
        cursor = start
        try:
            while not stop.is_set():
                polls += 1
                try:
                    resp = transport.request(
                        "GET",
                        "/v1/events",
                        params={"from": cursor, "limit": 1000, "wait": wait},
                        read_timeout=20 + wait,
                    )
                except ProblemError as exc:
                    if exc.slug != "range-not-satisfiable":
                        raise
                    behind += 1  # this replica has not yet caught up with the one answered last
                    stop.wait(0.01)
                    continue
                now = time.time()
                following = _next_of(resp.content)
                if following > cursor:
                    pages.append((now, cursor, following))
                elif (after := retry_after(resp)) is not None:
                    refused += 1
                    stop.wait(after)
                cursor = following
        finally:
            transport.close()
            with lock:
                results.append((pages, refused, polls, behind))

    threads = [threading.Thread(target=follow, args=(pem,)) for pem in pems]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(results)


def received_times(url: str, key: SigningKey, start: int, stop: int) -> dict[int, float]:
    """Each entry's ``received`` (epoch seconds) for indexes ``start`` to ``stop``."""
    times: dict[int, float] = {}
    with Client(url, key, timeout=30) as client:
        while start < stop:
            page = client.entries(start, limit=1000)
            for entry in page.entries:
                times[entry.index] = datetime.fromisoformat(entry.received).timestamp()
            start = page.next
    return times


class CheckpointWatch:
    """``GET /v1/checkpoint`` through nginx every 10 ms while it runs, as a site does in each
    round; counts checkpoints smaller than one this client was served before (a replica behind
    another: a site's follower takes such a checkpoint for a rollback)."""

    def __init__(self, url: str) -> None:
        self.reads = self.backwards = 0
        self._url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seen = 0
        with Client(self._url, timeout=10) as client:
            while not self._stop.wait(0.01):
                size = int(client.checkpoint().split(b"\n")[1])
                self.reads += 1
                self.backwards += size < seen
                seen = max(seen, size)

    def __enter__(self) -> CheckpointWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def crowd_run(setup: Setup, count: int, root: Path, args: Any) -> dict[str, Any]:
    """One wrk run with ``--crowd`` followers long-polling through nginx."""
    keys = [setup.keys["site-a" if n % 2 else "site-b"].private_pem() for n in range(args.crowd)]
    shares = [keys[n :: args.crowd_processes] for n in range(args.crowd_processes)]
    context = multiprocessing.get_context("fork")
    stop, out = context.Event(), context.Queue()
    with Client(setup.url, setup.keys["alice"]) as alice:
        start = alice.entries(0, limit=1).size
        processes = [
            context.Process(
                target=_crowd_process,
                args=(setup.url, share, start, args.crowd_wait, args.follower_nice, stop, out),
            )
            for share in shares
        ]
        try:
            for process in processes:
                process.start()
            time.sleep(args.crowd_settle)  # every follower has its first long-poll in flight
            with CheckpointWatch(setup.url) as watch:
                got = wrk_run(setup.url, setup.keys["alice"], count, setup.pids(), root, args)
            stop.set()
            alice.post_event(new_task(setup.keys["alice"], -1))  # wakes every waiting follower
            followers = [f for _ in processes for f in out.get(timeout=args.crowd_wait + 30)]
            for process in processes:
                process.join(10)
        finally:
            for process in processes:
                if process.is_alive():
                    process.kill()
        end = alice.entries(0, limit=1).size
    times = received_times(setup.url, setup.keys["alice"], start, end)
    latencies = sorted(
        (now - times[index]) * 1000
        for pages, *_ in followers
        for now, first, following in pages
        for index in range(first, following)
        if index in times
    )
    got["followers"] = len(followers)
    got["checkpoints"] = (watch.backwards, watch.reads)
    got["refused"] = sum(refused for _, refused, _, _ in followers)
    got["polls"] = sum(polls for _, _, polls, _ in followers)
    got["behind"] = sum(behind for *_, behind in followers)
    got["latency"] = latencies
    got["appended"] = end - start
    return got


def bench_crowd(root: Path, args: Any) -> None:
    print(
        f"\n3. {args.crowd} followers (threads in {args.crowd_processes} processes, at nice "
        f"{args.follower_nice}) long-polling through nginx to 2 replicas (wait="
        f"{args.crowd_wait}) while wrk appends over {args.connections} connections (nice "
        f"{args.nice}), {args.duration} s per run, against the same run without followers"
    )
    widths = [8, 6, 12, 12, 6, 8, 8, 8, 8, 8, 7, 9, 9]
    head = ["threads", "round", "alone req/s", "crowd req/s", "ratio", "p50", "p99", "max"]
    for threads in args.crowd_threads:
        with replica_set(root / f"crowd-{threads}", 2, threads) as setup:
            count = calibrate(setup.url, "2 replicas", setup.keys["alice"], root, args)
            print(row([*head, "polls/s", "no-slot", "416", "ckpt back", "host busy"], widths))
            rounds = []
            for n in range(args.rounds):
                pair: dict[str, Any] = {}
                for name in ("alone", "crowd") if n % 2 == 0 else ("crowd", "alone"):
                    if name == "alone":
                        pair[name] = wrk_run(
                            setup.url, setup.keys["alice"], count, setup.pids(), root, args
                        )
                    else:
                        pair[name] = crowd_run(setup, count, root, args)
                rounds.append(pair)
                alone, crowd = pair["alone"], pair["crowd"]
                lat = crowd["latency"]
                cells = [
                    str(threads),
                    str(n + 1),
                    f"{alone['rate']:.0f}",
                    f"{crowd['rate']:.0f}",
                    f"{crowd['rate'] / alone['rate']:.2f}",
                    *(
                        f"{v:.0f} ms"
                        for v in (statistics.median(lat), percentile(lat, 0.99), lat[-1])
                    ),
                    f"{crowd['polls'] / crowd['seconds']:.0f}",
                    str(crowd["refused"]),
                    str(crowd["behind"]),
                    "{}/{}".format(*crowd["checkpoints"]),
                    f"{alone['host_busy']:.0%}/{crowd['host_busy']:.0%}",
                ]
                print(row(cells, widths), flush=True)
                for name, run in pair.items():
                    if run["non2xx"] or run["ran_out"] or run["socket_errors"]:
                        print(
                            f"  WARNING {name}: {run['non2xx']} non-2xx, socket errors "
                            f"{run['socket_errors'] or 'none'}, ran out: {run['ran_out']}"
                        )
            ratio = statistics.median(r["crowd"]["rate"] / r["alone"]["rate"] for r in rounds)
            everything = sorted(x for r in rounds for x in r["crowd"]["latency"])
            print(
                f"  {threads} threads, all rounds: append rate ratio (median) {ratio:.2f} "
                f"(target >= 0.90); notification p50 {statistics.median(everything):.0f} ms, "
                f"p99 {percentile(everything, 0.99):.0f} ms (target <= 100 ms) over "
                f"{len(everything)} deliveries"
            )
    print(
        "  latency: entry's received time -> the follower has the page holding it; polls/s: the "
        "followers' GETs over the wrk run's seconds; no-slot: answers without a free long-poll "
        "slot (Retry-After: the follower came back 1 s later); 416: a replica behind the one that "
        "answered the follower's previous poll refused its cursor (the follower tried again); ckpt "
        "back: of the checkpoints one client read through nginx every 10 ms, how many were "
        "smaller than one it had been served before; host busy: the whole host's CPU during the "
        "run alone/with the crowd"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_wrk_arguments(parser)
    parser.add_argument("--requests", type=int, default=5000, help="pre-signed per run, at least")
    parser.add_argument("--margin", type=float, default=3.0, help="x calibrated rate x duration")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16, help="waitress threads (1., 2.)")
    parser.add_argument("--nice", type=int, default=0, help="niceness of wrk")
    parser.add_argument("--follower-nice", type=int, default=19, help="niceness of followers")
    parser.add_argument("--followers", type=int, default=20)
    parser.add_argument("--appends", type=int, default=100)
    parser.add_argument("--crowd", type=int, default=200, help="followers in 3.")
    parser.add_argument("--crowd-processes", type=int, default=10)
    parser.add_argument("--crowd-threads", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--crowd-wait", type=int, default=5, help="the followers' wait=")
    parser.add_argument("--crowd-settle", type=float, default=3.0, help="seconds before wrk")
    parser.add_argument("--only", choices=("appends", "long-poll", "crowd"))
    parser.add_argument("--dir", type=Path, default=None, help="where temp directories go")
    args = parser.parse_args()
    if not os.environ.get(ENV):
        raise SystemExit(f"{ENV} is not set: {HINT}")
    root = Path(tempfile.mkdtemp(prefix="pht-replica-bench-", dir=args.dir))
    try:
        if args.only in (None, "appends"):
            bench_appends(root / "appends", args)
        if args.only in (None, "long-poll"):
            bench_long_poll(root / "long-poll", args)
        if args.only in (None, "crowd"):
            bench_crowd(root / "crowd", args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
