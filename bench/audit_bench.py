"""Audit figures (issue 5), each beside a baseline measured in the same run.

    python bench/audit_bench.py [--entries 100000] [--workers 2]

1. ``pht audit --registry`` of N entries over HTTP (a real ``pht serve`` process on loopback),
   as a ratio of the in-process replay verification rate of the same records (the ledger-core
   benchmark's figure; target >= 70%).
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ledger_bench import build_ledger  # noqa: E402
from cli.main import main as pht  # noqa: E402
from ledger.verify import verify_ledger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pht-audit-bench-"))
    try:
        print(f"building a {args.entries:,}-entry registry ...", flush=True)
        world, records = build_ledger(folder / "data", args.entries)
        auditor = folder / "audrey.key"
        world.keys["audrey"].save(auditor)

        start = time.perf_counter()
        verify_ledger(records, workers=args.workers)
        in_process = args.entries / (time.perf_counter() - start)

        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "-q",
                "serve",
                "--data",
                str(folder / "data"),
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert serve.stdout is not None
            url = serve.stdout.readline().removeprefix("listening on ").strip()
            time.sleep(1.1)  # the registry refuses requests signed in its first second
            out, err = io.StringIO(), io.StringIO()
            start = time.perf_counter()
            with redirect_stdout(out), redirect_stderr(err):
                code = pht(
                    [
                        "audit",
                        "--registry",
                        url,
                        "--key",
                        str(auditor),
                        "--json",
                        "--workers",
                        str(args.workers),
                        "--state",
                        str(folder / "state"),
                    ]
                )
            over_http = args.entries / (time.perf_counter() - start)
            assert code == 0, err.getvalue()[-2000:]
        finally:
            serve.terminate()
            serve.wait(30)
        print(
            f"in-process replay verification ({args.workers} workers): {in_process:,.0f} entries/s"
        )
        print(
            f"pht audit --registry over HTTP ({args.workers} workers):   {over_http:,.0f} entries/s"
            f" = {over_http / in_process:.0%} of in-process; target >= 70%"
        )
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
