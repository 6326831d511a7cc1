"""Run one benchmark script on two revisions, interleaved, so both see the same machine.

    python bench/interleave.py --base REV [--rounds 2] -- bench/ledger_bench.py --replay 50000

The base revision is checked out in a temporary git worktree; the script runs there and in this
tree alternately (base, this, base, this, ...), each in a fresh interpreter with its own tree
first on ``PYTHONPATH``. Every run's output is printed under a label, and the figure lines (those
with a number followed by ``/s``, ``ms``, ``x``, ``%`` or ``s``) are gathered at the end, base
and this tree side by side, so a before/after ratio can be read off one run of the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"\d[\d,.]*\s*(?:/s|ms|us|x|%|s)\b")


def run(tree: Path, script: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, *script], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{script[0]} failed in {tree} (exit {done.returncode})")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- SCRIPT [ARGS...]")
    args = parser.parse_args()
    script = [a for a in args.script if a != "--"] if args.script[:1] == ["--"] else args.script
    if not script:
        parser.error("give the benchmark script after --")
    workdir = Path(tempfile.mkdtemp(prefix="pht-base-"))
    base = workdir / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
        check=True,
        capture_output=True,
    )
    outputs: dict[str, list[str]] = {"base": [], "this": []}
    try:
        for n in range(args.rounds):
            for label, tree in (("base", base), ("this", ROOT)):
                print(f"===== round {n + 1}, {label} ({args.base if label == 'base' else 'HEAD'})")
                out = run(tree, script)
                print(out, flush=True)
                outputs[label].append(out)
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
        )
        shutil.rmtree(workdir, ignore_errors=True)
    print("===== figure lines, per round (base | this)")
    for n in range(args.rounds):
        pairs = zip(
            [line for line in outputs["base"][n].splitlines() if FIGURE.search(line)],
            [line for line in outputs["this"][n].splitlines() if FIGURE.search(line)],
            strict=False,
        )
        for before, after in pairs:
            print(f"  {before.strip()[:90]}\n    | {after.strip()[:90]}")


if __name__ == "__main__":
    main()
