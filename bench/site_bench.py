"""Site figures (issue 4, and issue 5's per-iteration overhead), each beside a baseline measured
in the same run.

    python bench/site_bench.py [--reps 7] [--sequential 50] [--tasks 100] [--no-demo]

Services: the Docker engine and the local image registry of ``.ci/services.sh``. The no-op image
``$REG/pht-bench/noop:1`` (``FROM pht-test/busybox``, ``CMD ["true"]``) is built and pushed first.

A. Baseline: ``docker pull`` then ``docker run --rm`` of the no-op image (median of ``--reps``).
   One task end to end through a real ``pht serve`` and a real ``siteclient follow`` process,
   as a researcher sees it (post, then wait on the registry until the result is in the ledger):
   median over ``--sequential`` tasks, each posted when the previous one has its result;
   target <= 1.3x A.
B. Baseline: ``--tasks`` no-op containers pulled and run with the docker SDK two at a time
   (pull, create, start, wait, remove; 2 threads). The same number of no-op tasks through one
   site with ``parallelism: 2``, from the first post to the last result; target <= 1.3x B.
C. From a task's append (its entry's ``received``) to its container starting (the result's
   ``started``, the engine's StartedAt), minus the pull (between the site's ``accepted`` and
   ``started`` status entries): p50 and p99 over the sequential tasks (no queueing), and over
   the parallel ones (which includes waiting for a free slot); target p50 <= 150 ms.
D. ``examples.demo.run_demo(patients=60)``: per-iteration overhead above the slowest site's
   container run time (issue 5; target <= 1 s).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from api.client.registry import Client  # noqa: E402
from ledger.bodies import Result, Role, Status, Task  # noqa: E402
from tests.ledger.factory import World, key  # noqa: E402
from tests.siteclient.site_env import SiteEnv  # noqa: E402

REGISTRY = os.environ.get("PHT_DOCKER_REGISTRY", "127.0.0.1:5000")
BASE = f"{REGISTRY}/pht-test/busybox:latest"
NOOP_REPO = f"{REGISTRY}/pht-bench/noop"
NOOP = f"{NOOP_REPO}:1"
# A site name of its own: a site removes containers with its label left on the engine, and the
# tests' sites (site-a...) may be running on the same engine.
SITE = f"bench-{os.getpid()}"


def build_noop(client: docker.DockerClient) -> None:
    """Build (legacy builder, as the tests do) and push the no-op image."""
    dockerfile = f'FROM {BASE}\nLABEL org.pht.test-image=bench\nCMD ["true"]\n'
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=NOOP, rm=True, forcerm=True)
    for message in client.images.push(NOOP_REPO, tag="1", stream=True, decode=True):
        if "error" in message:
            raise RuntimeError(f"push {NOOP}: {message['error']}")


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


# ---- baselines


def baseline_cli(reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(["docker", "pull", "-q", NOOP], check=True, capture_output=True)
        subprocess.run(["docker", "run", "--rm", NOOP], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def baseline_sdk(client: docker.DockerClient, count: int) -> float:
    todo = list(range(count))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                todo.pop()
            try:
                client.images.pull(NOOP_REPO, tag="1")
                container = client.containers.create(NOOP)
                container.start()
                container.wait()
                container.remove()
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


# ---- the site


@dataclass
class Watch:
    """Follows the registry's entries and records, per task, when each step was appended."""

    client: Client
    cursor: int = 0
    received: dict[str, dict[str, datetime]] = field(default_factory=dict)
    started: dict[str, datetime] = field(default_factory=dict)
    done_at: dict[str, float] = field(default_factory=dict)

    def poll(self, wait: int) -> None:
        page = self.client.entries(self.cursor, 1000, wait=wait)
        now = time.perf_counter()
        for entry in page.entries:
            body = entry.event.event.body
            at = datetime.fromisoformat(entry.received)
            if isinstance(body, Task):
                self.received.setdefault(entry.event.event.id, {})["task"] = at
            elif isinstance(body, Status):
                self.received.setdefault(body.task, {})[str(body.state)] = at
            elif isinstance(body, Result):
                if str(body.state) != "completed":
                    raise RuntimeError(f"task {body.task[:12]} ended {body.state}: {body.reason}")
                assert body.started is not None
                self.started[body.task] = datetime.fromisoformat(body.started)
                self.received.setdefault(body.task, {})["result"] = at
                self.done_at[body.task] = now
        self.cursor = page.next

    def until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for results")
            self.poll(5)

    def phases(self, tasks: list[str]) -> str:
        """Median milliseconds between the appends of each step, for finding where time goes."""
        steps = [self.received[t] | {"container": self.started[t]} for t in tasks]
        names = ("task", "accepted", "started", "container", "result")
        parts = []
        for first, second in itertools.pairwise(names):
            gaps = [(s[second] - s[first]).total_seconds() for s in steps]
            parts.append(f"{first}->{second} {median_ms(gaps):.0f}")
        return ", ".join(parts) + " ms"

    def start_latency(self, task: str) -> float:
        """Seconds from the task's append to its container start, minus the pull."""
        steps = self.received[task]
        pull = (steps["started"] - steps["accepted"]).total_seconds()
        return (self.started[task] - steps["task"]).total_seconds() - pull


def run_site(env: SiteEnv, parallelism: int) -> tuple[subprocess.Popen[str], Client]:
    config = env.write_config(
        SITE,
        allowed_images=[r"127\.0\.0\.1:5000/pht-bench/noop:1"],
        parallelism=parallelism,
        poll_wait_s=25,
        limits={"timeout_s": 60, "memory_mb": 64},
    )
    proc = env.spawn(config)
    return proc, env.client("alice")


def site_figures(
    tmp: Path, sequential: int, count: int
) -> tuple[list[float], float, list[float], list[float]]:
    tmp.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):  # pht init's summary
        world = World()
        world.keys[SITE], world.roles[SITE] = key(SITE), Role.SITE
        env = SiteEnv(tmp, world=world).start()
    proc: subprocess.Popen[str] | None = None
    try:
        time.sleep(1.1)  # the registry refuses requests signed in its first second
        proc, client = run_site(env, parallelism=2)
        analyst = env.analyst()
        watch = Watch(client)
        warm = analyst.post(NOOP, {}, [SITE])  # the site's first sync and TOFU pinning
        watch.until(lambda: warm in watch.started, 120)

        one: list[float] = []
        seq_ids = []
        for _ in range(sequential):
            start = time.perf_counter()
            task = analyst.post(NOOP, {}, [SITE])
            analyst.wait(task, timeout=60)
            one.append(time.perf_counter() - start)
            seq_ids.append(task)
        watch.until(lambda: all(t in watch.started for t in seq_ids), 60)
        seq_latency = [watch.start_latency(t) for t in seq_ids]
        print(f"   phases, one at a time (median): {watch.phases(seq_ids)}", flush=True)

        start = time.perf_counter()
        ids = [analyst.post(NOOP, {}, [SITE]) for _ in range(count)]
        watch.until(lambda: all(t in watch.done_at for t in ids), 600)
        many = max(watch.done_at[t] for t in ids) - start
        par_latency = [watch.start_latency(t) for t in ids]
        print(f"   phases, parallel (median): {watch.phases(ids)}", flush=True)
        return one, many, seq_latency, par_latency
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        env.stop()


# ---- the demo


def demo_overheads(tmp: Path) -> list[float]:
    subprocess.run(
        ["bash", str(ROOT / "examples/images/build.sh")],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    from examples.demo import run_demo

    with contextlib.redirect_stdout(io.StringIO()):
        outcome = run_demo(tmp, patients=60, show=lambda text: None)
    return outcome.overheads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="baseline A repetitions")
    parser.add_argument("--sequential", type=int, default=50, help="one-at-a-time tasks")
    parser.add_argument("--tasks", type=int, default=100, help="tasks at parallelism 2")
    parser.add_argument("--no-demo", action="store_true", help="skip the issue-5 demo figure")
    args = parser.parse_args()
    os.umask(0o022)
    client = docker.from_env(timeout=120)
    with tempfile.TemporaryDirectory(prefix="pht-site-bench-") as folder:
        tmp = Path(folder)
        build_noop(client)
        a = baseline_cli(args.reps)
        b = baseline_sdk(client, args.tasks)
        one, many, seq_latency, par_latency = site_figures(
            tmp / "site", args.sequential, args.tasks
        )
        base_a = median_ms(a)
        print(f"A  baseline docker pull + docker run --rm:   median {base_a:7.0f} ms")
        print(
            f"   one task end to end ({len(one)} tasks):       median {median_ms(one):7.0f} ms"
            f"  ratio {median_ms(one) / base_a:.2f}x (target <= 1.3x)"
        )
        print(f"B  baseline {args.tasks} containers, SDK, 2 threads:    {b * 1000:7.0f} ms")
        print(
            f"   {args.tasks} tasks, one site, parallelism 2:        {many * 1000:7.0f} ms"
            f"  ratio {many / b:.2f}x (target <= 1.3x)"
        )
        for label, values in (("one at a time", seq_latency), ("parallel run ", par_latency)):
            p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
            print(
                f"C  append -> container start - pull, {label}: p50 {p50:6.0f} ms  p99 "
                f"{p99:6.0f} ms  (n={len(values)}; target p50 <= 150 ms)"
            )
        if not args.no_demo:
            overheads = demo_overheads(tmp / "demo")
            print(
                f"D  demo (60 patients) overhead per iteration above the slowest container: "
                f"median {statistics.median(overheads):.2f} s, max {max(overheads):.2f} s "
                f"over {len(overheads)} iterations (target <= 1 s)"
            )
    client.close()


if __name__ == "__main__":
    main()
