"""Audit figures (issues 5 and 17), each beside a baseline measured in the same run.

    python bench/audit_bench.py [--entries 1000000] [--workers 2] [--dir DIR] [--pages]

``pht audit --registry`` of N entries from a real ``pht serve`` process on loopback, read through
C2SP tlog-tiles (each entry bundle held to the signed checkpoint), as a ratio of the in-process
replay verification of the same records with the same workers (issue 17: target >= 0.9). Also
printed, from the same run: the in-process ``ledger.audit.audit`` (replay plus report, the work
``pht audit`` does once it has the bytes), the same audit with the tiles read from its cache
(``--cache-tiles``, from the second round on: the first fills the cache), and with ``--pages``
the audit of a registry without tiles (the entry pages; issue 5's figure, target >= 0.7).

``--dir`` keeps the built ledger between runs (building 1,000,000 signed entries takes minutes).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.client.tiles import TileReader  # noqa: E402
from bench.webview_bench import build  # noqa: E402
from cli.main import main as pht  # noqa: E402
from ledger.audit import audit  # noqa: E402
from ledger.store.readlog import read_log  # noqa: E402
from ledger.verify import verify_ledger  # noqa: E402


def cpu_seconds(pid: int | None) -> float:
    """CPU time used so far by this process, its reaped children (the audit's workers) and,
    when given, the registry process ``pid``."""
    mine = os.times()
    return mine.user + mine.system + mine.children_user + mine.children_system + server_cpu(pid)


def server_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int) -> None:
    """Wait until the registry has finished opening the ledger (its CPU time stops growing), so
    that its start does not slow the first baseline."""
    before = server_cpu(pid)
    while True:
        time.sleep(1.0)
        now = server_cpu(pid)
        if now - before < 0.05:
            return
        before = now


def timed_audit(url: str, auditor: Path, state: Path, workers: int, *extra: str) -> float:
    """Seconds ``pht audit --registry`` takes; it must pass."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["audit", "--registry", url, "--key", str(auditor), "--json"]
    argv += ["--workers", str(workers), "--state", str(state), *extra]
    start = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        code = pht(argv)
    elapsed = time.perf_counter() - start
    assert code == 0, err.getvalue()[-2000:]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="keep (and reuse) the built ledger here")
    parser.add_argument("--pages", action="store_true", help="also audit through entry pages")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many of each")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pht-audit-bench-"))
    data = args.dir if args.dir is not None else folder / "data"
    try:
        world = build(data, args.entries)
        records = read_log(data)
        n = len(records)
        auditor = folder / "audrey.key"
        world.keys["audrey"].save(auditor)

        serve = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "-q", "serve", "--data", str(data), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        best: dict[str, float] = {}
        cpu: dict[str, float] = {}  # entries per CPU second, all processes involved

        def keep(name: str, seconds: float, cpu_used: float) -> None:
            best[name] = max(best.get(name, 0.0), n / seconds)
            cpu[name] = max(cpu.get(name, 0.0), n / cpu_used)

        def run(name: str, work: Callable[[], float], *, http: bool = True) -> None:
            server = serve.pid if http else None  # its CPU counts for the HTTP runs only
            before = cpu_seconds(server)
            seconds = work()
            keep(name, seconds, cpu_seconds(server) - before)

        def replay() -> float:
            start = time.perf_counter()
            verify_ledger(records, workers=args.workers)
            return time.perf_counter() - start

        def audit_in_process() -> float:
            start = time.perf_counter()
            audit([records], workers=args.workers)
            return time.perf_counter() - start

        try:
            assert serve.stdout is not None
            url = serve.stdout.readline().removeprefix("listening on ").strip()
            time.sleep(1.1)  # the registry refuses requests signed in its first second
            settle(serve.pid)
            # Rounds alternate baseline and HTTP runs (best of each), so that a machine whose
            # load changes over the run does not favour either side.
            for r in range(args.rounds):
                state = folder / f"cold{r}"
                run("replay", replay, http=False)
                run("tiles", partial(timed_audit, url, auditor, state, args.workers))
                run("audit", audit_in_process, http=False)
                warm = (folder / "warm", args.workers, "--cache-tiles")
                run("cached", partial(timed_audit, url, auditor, *warm))
                if args.pages:
                    offered = TileReader.offered
                    TileReader.offered = lambda self: False  # type: ignore[method-assign]
                    try:
                        pages = folder / f"p{r}"
                        run("pages", partial(timed_audit, url, auditor, pages, args.workers))
                    finally:
                        TileReader.offered = offered  # type: ignore[method-assign]
        finally:
            serve.terminate()
            serve.wait(30)
        in_process, audit_in_process, tiles = best["replay"], best["audit"], best["tiles"]
        cached, pages = best["cached"], best.get("pages")
        w = f"{args.workers} workers"
        print(f"{n:,} entries, {w}, best of {args.rounds} alternating rounds")
        print(f"baseline: in-process replay verification:        {in_process:,.0f} entries/s")
        print(
            f"in-process ledger.audit.audit (replay + report):   {audit_in_process:,.0f} entries/s"
            f" = {audit_in_process / in_process:.2f} of replay"
        )
        print(
            f"pht audit --registry through tiles (cold):        {tiles:,.0f} entries/s"
            f" = {tiles / in_process:.2f} of in-process replay; target >= 0.9"
        )
        print(
            f"pht audit --registry --cache-tiles (warm cache):  {cached:,.0f} entries/s"
            f" = {cached / in_process:.2f} of in-process replay"
        )
        if pages is not None:
            print(
                f"pht audit --registry through entry pages:         {pages:,.0f} entries/s"
                f" = {pages / in_process:.2f} of in-process replay; target >= 0.7"
            )
        print("entries per CPU second of every process involved (the load of other work on the")
        print("machine moves these far less; the registry's CPU counted for the HTTP runs):")
        for name, rate in cpu.items():
            print(f"  {name:<7} {rate:>8,.0f} = {rate / cpu['replay']:.2f} of replay")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
