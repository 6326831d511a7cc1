"""Heartbeat cost (issue 13): a registry's append throughput with and without sites beating.

    python bench/heartbeat_bench.py [--seconds 10] [--sites 50] [--interval 5] [--rounds 3]

Append throughput of a real ``pht serve`` (8 threads posting signed tasks for ``--seconds``, as
``bench/witness_bench.py`` B measures it), without and then with ``--sites`` simulated sites each
sending a signed heartbeat (``POST /v1/heartbeats``) every ``--interval`` seconds, spread evenly
over the interval as independent sites would be. The sites run in a process of their own, so that
their client work does not take the append workers' interpreter lock (it is not the registry's
cost). Rounds alternate (baseline, loaded, baseline, ...) so that drift hits both alike; the
figure is the ratio of the medians. Target: heartbeats cost < 2% of append throughput.

On a shared machine the rounds vary by more than 2%, so the run also measures what the ratio
estimates, in the same registry: its CPU time (``/proc/<pid>/stat``) per append during the
baseline rounds, and per heartbeat during a phase of heartbeats alone (no appends), and prints the
share of the registry's CPU that ``--sites`` heartbeats every ``--interval`` s take next to the
appends of the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.client.registry import Client  # noqa: E402
from api.client.transport import RetryPolicy  # noqa: E402
from api.wire.heartbeat import Heartbeat  # noqa: E402
from bench.witness_bench import _append_rate  # noqa: E402
from ledger.bodies import Role  # noqa: E402
from ledger.events import format_time  # noqa: E402
from tests.api.registry_process import RegistryProcess, init_registry  # noqa: E402
from tests.ledger.factory import World, key  # noqa: E402


def _beating(url: str, world: World, names: list[str], interval: float, stop: Any) -> list[int]:
    """Each site beats every ``interval`` s, the sites spread over it; returns [sent, refused]."""
    counts = [0, 0]
    clients = {n: Client(url, world.keys[n], retry=RetryPolicy(attempts=1)) for n in names}
    reader = Client(url, world.keys[names[0]])
    size = [reader.health()]
    pool = ThreadPoolExecutor(max_workers=8)
    step = interval / len(names)

    def send(name: str) -> None:
        beat = Heartbeat(
            site=name,
            version="bench",
            verified_size=size[0],
            running=0,
            docker=True,
            sparql=True,
            sent_at=format_time(datetime.now(UTC)),
        )
        try:
            clients[name].heartbeat(beat)
            counts[0] += 1
        except Exception:  # counted, not fatal
            counts[1] += 1

    try:
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            pool.submit(send, names[n % len(names)])
            n += 1
            stop.wait(max(0.0, start + n * step - time.monotonic()))
            if n % len(names) == 0:
                size[0] = reader.health()  # the sites keep up with the ledger
    finally:
        pool.shutdown()
        for client in clients.values():
            client.close()
        reader.close()
    return counts


def _beating_to(out: Any, *args: Any) -> None:
    out.put(_beating(*args))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phase(context: Any, url: str, world: World, names: list[str], interval: float) -> Any:
    stop = context.Event()
    out = context.Queue()
    proc = context.Process(target=_beating_to, args=(out, url, world, names, interval, stop))
    proc.start()
    return proc, stop, out


def figures(
    tmp: Path, *, seconds: float, sites: int, interval: float, rounds: int
) -> tuple[list[float], list[float], list[int], float, float]:
    """Appends/s without and with heartbeats per round, [sent, refused], and the registry's CPU
    seconds per append and per heartbeat."""
    world = World()
    names = [f"s{i:02d}" for i in range(sites)]
    for name in names:
        world.keys[name], world.roles[name] = key(name), Role.SITE
    with contextlib.redirect_stdout(io.StringIO()):
        data = init_registry(tmp, world)
    registry = RegistryProcess(data, threads=16)
    registry.start()
    alice, origin = world.keys["alice"], world.origin
    try:
        time.sleep(1.1)  # the registry refuses requests signed in its first second
        _append_rate(registry.url, alice, origin, 2)  # warm up
        bases, loads, counts = [], [], [0, 0]
        context = multiprocessing.get_context("fork")
        assert registry.proc is not None
        pid = registry.proc.pid
        append_cpu = appended = 0.0
        for _ in range(rounds):
            before = cpu_seconds(pid)
            bases.append(_append_rate(registry.url, alice, origin, seconds))
            append_cpu += cpu_seconds(pid) - before
            appended += bases[-1] * seconds
            proc, stop, out = _phase(context, registry.url, world, names, interval)
            time.sleep(1.0)
            loads.append(_append_rate(registry.url, alice, origin, seconds))
            stop.set()
            sent = out.get(timeout=60)
            proc.join(30)
            counts = [counts[0] + sent[0], counts[1] + sent[1]]
        # Heartbeats alone, ten times as often, to measure the registry's CPU per heartbeat.
        time.sleep(0.5)
        before = cpu_seconds(pid)
        proc, stop, out = _phase(context, registry.url, world, names, interval / 10)
        time.sleep(seconds)
        stop.set()
        alone = out.get(timeout=60)
        proc.join(30)
        beat_cpu = (cpu_seconds(pid) - before) / max(1, alone[0])
        return bases, loads, counts, append_cpu / max(1.0, appended), beat_cpu
    finally:
        registry.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="append run length")
    parser.add_argument("--sites", type=int, default=50, help="simulated sites")
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat period, seconds")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of each")
    args = parser.parse_args()
    os.umask(0o022)
    with tempfile.TemporaryDirectory(prefix="pht-heartbeat-bench-") as folder:
        bases, loads, (sent, refused), per_append, per_beat = figures(
            Path(folder),
            seconds=args.seconds,
            sites=args.sites,
            interval=args.interval,
            rounds=args.rounds,
        )
    base, loaded = statistics.median(bases), statistics.median(loads)
    print(
        f"   rounds, appends/s: baseline {[round(b) for b in bases]}, loaded "
        f"{[round(x) for x in loads]}"
    )
    print(
        f"appends/s: baseline {base:7.1f}, with {args.sites} sites beating every "
        f"{args.interval:g} s {loaded:7.1f}: ratio {loaded / base:.3f} "
        f"({100 * (1 - loaded / base):+.1f}% slower; target < 2%); {sent} heartbeats taken, "
        f"{refused} refused"
    )
    beats_per_s = args.sites / args.interval
    share = beats_per_s * per_beat / (base * per_append)
    print(
        f"registry CPU: {per_append * 1000:.2f} ms per append, {per_beat * 1000:.2f} ms per "
        f"heartbeat; {beats_per_s:g} heartbeats/s take {100 * share:.2f}% of the CPU the "
        f"baseline's appends use (target < 2%)"
    )


if __name__ == "__main__":
    main()
