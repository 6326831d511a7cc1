"""Web view figures (issue 14), each beside a baseline measured in the same run.

    python bench/webview_bench.py [--entries 1000000] [--dir DIR] [--rounds 20]

1. First verified overview of a large ledger (default 1,000,000 entries) in Debian's chromium,
   timed from the sign-in click to the rendered overview: the page verifies the checkpoint's
   signature, the genesis and (returning visit) a consistency proof to the checkpoint it saw
   before, and proves each entry it shows; it never downloads the ledger (counts come from the
   read endpoints where the registry has them). Target: under 1 s. Beside it, the time the CLI's
   own reader takes to reach the same checkpoint from nothing (``pht audit`` of the whole ledger
   would take minutes; the figure printed is just fetching and verifying the checkpoint in Python).
2. Live task page: a site's result appended while the page is open, until the page shows it
   (p50, p90 over ``--rounds``), beside ``pht task watch`` showing the same result (the baseline),
   on the same registry in the same run. Target: p50 under 100 ms.

3. Reading a whole ledger (the page's "full" mode, ``--full-entries``, default 4,000: the most it
   reads whole) as entry bundles against reading it as pages, in the same run through the same
   loopback proxy (which answers 404 for tiles in the pages arm, as a registry without them),
   alternating, each in a fresh browser profile; and a returning visit, whose bundles the
   browser's cache holds. Timed from trusting the pins to the rendered overview, and the page's
   own read step.

``--dir`` keeps the built ledger between runs (building 1,000,000 signed entries takes minutes).
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.client.registry import Client  # noqa: E402
from ledger.bodies import Output, Result, ResultState, Status, StatusState, Task  # noqa: E402
from ledger.events import SignedEvent  # noqa: E402
from ledger.store.ledger import Ledger  # noqa: E402
from tests.api.registry_process import RegistryProcess  # noqa: E402
from tests.ledger.factory import World  # noqa: E402

CHROMIUM = os.environ.get("PHT_CHROMIUM", "/usr/bin/chromium")


def build(directory: Path, count: int) -> World:
    """A data directory of ``count`` entries (genesis, then task, status, result triples), ready
    for ``pht serve``; reused when it already holds them."""
    world = World()
    if (directory / "log.key").exists():
        return world
    print(f"building a {count:,}-entry ledger in {directory} ...", flush=True)
    ledger = Ledger.create(
        directory,
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        time_window=None,  # synthetic history: events dated ms apart
    )
    produced, n, batch = 1, 0, []
    started = time.perf_counter()
    while produced < count:
        task = world.sign(
            "alice",
            Task(image="myconsortium/avg:1.2", sites=("site-a", "site-b"), config={"n": n}),
        )
        n += 1
        group: list[SignedEvent] = [
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
        ][: count - produced]
        batch.extend(group)
        produced += len(group)
        if len(batch) >= 6000:
            ledger._commit(batch)  # bulk load through the same commit path
            batch = []
            if produced % 120000 < 6000:
                print(f"  {produced:,} / {count:,}", flush=True)
    if batch:
        ledger._commit(batch)
    ledger.close()
    world.log_key.save(directory / "log.key")
    print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
    return world


def overview(page: Any) -> None:
    """Wait for the verified overview; a red banner instead is a failure of the bench."""
    page.wait_for_selector("#overview, #banner")
    if page.query_selector("#banner"):
        raise SystemExit(f"verification failed: {page.inner_text('#banner')}")


def sign_in(page: Any, url: str, key: Path) -> None:
    page.goto(url + "/")
    page.set_input_files("#key-file", str(key))


def bench_overview(browser: Any, url: str, key: Path, client: Client, world: World) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(120000)
    sign_in(page, url, key)
    page.click("#sign-in-button")
    page.wait_for_selector("#confirm-pins")
    start = time.perf_counter()
    page.click("#trust-registry")
    overview(page)
    first = time.perf_counter() - start
    size = int(page.inner_text("#size"))
    steps = page.evaluate("() => window.__pht.data.timings")
    print(
        "  steps of the first load (ms from its start):",
        {k: round(v - steps["start"]) for k, v in steps.items()},
    )
    # A returning visit after the ledger grew: a consistency proof to the checkpoint seen before.
    task = world.sign("alice", Task(image="myconsortium/avg:1.2", sites=("site-a",), config={}))
    client.post_event(task)
    times = []
    for _ in range(5):
        sign_in(page, url, key)
        start = time.perf_counter()
        page.click("#sign-in-button")
        overview(page)
        times.append(time.perf_counter() - start)
    again = statistics.median(times)
    context.close()
    start = time.perf_counter()
    client.checkpoint()
    cli = time.perf_counter() - start
    print(
        f"overview of a {size:,}-entry ledger: first visit {first * 1000:.0f} ms after trusting "
        f"the pins, returning visit {again * 1000:.0f} ms after the sign-in click (median of 5; "
        f"target < 1000 ms); the CLI fetches the bare checkpoint in {cli * 1000:.1f} ms"
    )


def watch_latency(
    url: str, key: Path, alice: Client, site: Client, world: World, rounds: int
) -> list[float]:
    """``pht task watch``: from appending a result to the watcher printing it."""
    out = []
    for _ in range(rounds):
        task = world.sign("alice", Task(image="myconsortium/avg:1.2", sites=("site-a",), config={}))
        alice.post_event(task)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "task",
                "watch",
                task.event.id,
                "--registry",
                url,
                "--key",
                str(key),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": tempfile.mkdtemp()},
        )
        assert proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        while "site-a" not in proc.stdout.readline():
            pass  # the first table: the watcher is waiting
        time.sleep(0.2)
        start = time.perf_counter()
        site.post_event(
            world.sign(
                "site-a", Result(task=task.event.id, state=ResultState.COMPLETED, exit_code=0)
            )
        )
        while "completed" not in proc.stdout.readline():
            pass
        out.append(time.perf_counter() - start)
        proc.wait(30)
    return out


def page_latency(
    browser: Any, url: str, key: Path, alice: Client, site: Client, world: World, rounds: int
) -> list[float]:
    """The open task page: from appending a result to the page showing it."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(60000)
    sign_in(page, url, key)
    page.click("#sign-in-button")
    page.click("#trust-registry")
    page.wait_for_selector("#overview")
    out: list[float] = []
    inside: list[float] = []
    for _ in range(rounds):
        task = world.sign("alice", Task(image="myconsortium/avg:1.2", sites=("site-a",), config={}))
        alice.post_event(task)
        page.goto(f"{url}/#/task/{task.event.id}")
        page.wait_for_selector(f"#task[data-task='{task.event.id}'] [data-site='site-a']")
        time.sleep(0.2)
        start = time.perf_counter()
        site.post_event(
            world.sign(
                "site-a", Result(task=task.event.id, state=ResultState.COMPLETED, exit_code=0)
            )
        )
        page.wait_for_selector(
            f"#task[data-task='{task.event.id}'] [data-site='site-a'] [data-state='completed']"
        )
        out.append(time.perf_counter() - start)
        t = page.evaluate("() => window.__pht.timings")
        inside.append((t["rendered"] - t["polled"]) / 1000)
    context.close()
    report("  of which the page verifies and renders after the long-poll answers", inside)
    return out


def bench_full_read(browser: Any, url: str, key: Path, rounds: int) -> None:
    from tests.webview.proxy import TamperingProxy

    proxy = TamperingProxy(url)
    arms: dict[str, list[float]] = {"pages": [], "tiles": [], "tiles, cached": []}
    reads: dict[str, list[float]] = {name: [] for name in arms}
    size = 0

    def load(page: Any, arm: str, *, trust: bool) -> None:
        nonlocal size
        sign_in(page, proxy.url, key)
        page.click("#sign-in-button")
        if trust:
            page.wait_for_selector("#confirm-pins")
        start = time.perf_counter()
        if trust:
            page.click("#trust-registry")
        overview(page)
        arms[arm].append(time.perf_counter() - start)
        steps = page.evaluate("() => window.__pht.data.timings")
        if steps.get("via") != arm.partition(",")[0]:
            raise SystemExit(f"the {arm} arm read the ledger as {steps.get('via')}")
        reads[arm].append((steps["read"] - steps["checkpoint"]) / 1000)
        if os.environ.get("PHT_BENCH_STEPS"):
            print(arm, {k: round(v - steps["start"]) for k, v in steps.items() if k != "via"})
        size = int(page.inner_text("#size"))

    try:
        for _ in range(rounds):
            for arm in ("pages", "tiles"):
                proxy.missing = ("/v1/tile/",) if arm == "pages" else ()
                context = browser.new_context()
                page = context.new_page()
                page.set_default_timeout(120000)
                load(page, arm, trust=True)
                if arm == "tiles":
                    load(page, "tiles, cached", trust=False)
                context.close()
    finally:
        proxy.close()
    pages = statistics.median(arms["pages"])
    print(f"reading a {size:,}-entry ledger whole, median of {rounds} (overview; read step):")
    for arm, times in arms.items():
        overview_ms, read_ms = statistics.median(times) * 1000, statistics.median(reads[arm]) * 1000
        ratio = pages / statistics.median(times)
        print(f"  {arm:14} {overview_ms:6.0f} ms; {read_ms:6.0f} ms  ({ratio:.2f}x the pages)")


def report(name: str, values: list[float]) -> float:
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    print(f"{name}: p50 {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms over {len(values)} results")
    return p50


def run_part(browser: Any, part: str, data: Path, count: int, keys: Path, rounds: int) -> None:
    world = build(data, count)
    registry = RegistryProcess(data, log=keys.parent / f"serve-{count}.log")
    url = registry.start(timeout=600)
    key = keys / "alice.key"
    try:
        with Client(url, world.keys["alice"]) as alice, Client(url, world.keys["site-a"]) as site:
            if part == "overview":
                bench_overview(browser, url, key, alice, world)
                return
            if part == "full-read":
                bench_full_read(browser, url, key, rounds)
                return
            page = report(
                "open task page shows a new result",
                page_latency(browser, url, key, alice, site, world, rounds),
            )
            watch = report(
                "pht task watch shows it (baseline)",
                watch_latency(url, key, alice, site, world, rounds),
            )
            print(f"page / watch at p50: {page / watch:.2f}x (target: page p50 < 100 ms)")
    finally:
        registry.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--live-entries", type=int, default=2_000)
    parser.add_argument("--full-entries", type=int, default=4_000)
    parser.add_argument(
        "--only", choices=("overview", "live", "full-read"), default=None, help="one part"
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="pht-webview-bench-"))
    keep = args.dir or scratch
    try:
        keys = scratch / "keys"
        keys.mkdir()
        world = World()
        for name in ("alice", "site-a"):
            world.keys[name].save(keys / f"{name}.key")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            parts = (
                (args.entries, "overview"),
                (args.live_entries, "live"),
                (args.full_entries, "full-read"),
            )
            for count, part in parts:
                if args.only in (None, part):
                    rounds = args.rounds if part == "live" else max(3, args.rounds // 4)
                    run_part(browser, part, keep / f"ledger-{count}", count, keys, rounds)
            browser.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
