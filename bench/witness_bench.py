"""Witness figures (issue 16), each against a baseline measured in the same run.

    python bench/witness_bench.py [--tasks 30] [--seconds 10] [--witnesses 50] [--skip-sites]

Services: the Docker engine and the local image registry of ``.ci/services.sh`` (the no-op image
of ``bench/site_bench.py`` is built and pushed first).

A. Three sites (``siteclient follow`` processes) follow a real ``pht serve``; tasks for site-a,
   posted one at a time: from the task's append to its container start, minus the pull (as
   ``site_bench.py`` C). Baseline: no witnesses. Then the same with each site witnessing (its
   ``witness_key_file``) and a witness policy of 2 of the 3 in the ledger, so site-a acts only
   on checkpoints two sites cosigned. Target: p50 grows by at most 100 ms.
B. Append throughput of a real ``pht serve`` (8 threads posting signed tasks for ``--seconds``),
   without and then with 50 simulated witnesses cosigning the newest checkpoint once a second
   each (signed ``POST /v1/cosignatures``, 50 a second, sent by 10 threads as independent
   witnesses would). Three rounds of each, alternated; medians. Target: throughput falls < 5%.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402

from api.client.registry import Client  # noqa: E402
from bench.site_bench import NOOP, Watch, build_noop, percentile  # noqa: E402
from cli.main import main as pht  # noqa: E402
from crypto import SigningKey  # noqa: E402
from ledger.bodies import Role, Task, WitnessPolicySet  # noqa: E402
from ledger.checkpoint import Checkpoint  # noqa: E402
from ledger.cosignature import cosign  # noqa: E402
from ledger.events import SignedEvent, new_event  # noqa: E402
from tests.api.registry_process import RegistryProcess  # noqa: E402
from tests.ledger.factory import World, key  # noqa: E402
from tests.siteclient.site_env import SiteEnv  # noqa: E402

SITES = ("site-a", "site-b", "site-c")
ROUNDS = 3


def _post_policy(env: SiteEnv, world: World) -> None:
    with Client(env.url, world.keys["admin"]) as admin:
        log_key = admin.entry(0).event.event.body.log_key  # type: ignore[union-attr]
        body = WitnessPolicySet(policy=world.witness_policy(SITES, 2, log_key=log_key))
        event = new_event(body, ledger=world.origin, author=world.keys["admin"].key_id)
        admin.post_event(SignedEvent.sign(event, world.keys["admin"]))


def site_latencies(tmp: Path, tasks: int, *, witnesses: bool) -> list[float]:
    tmp.mkdir()
    world = World(witnesses=witnesses)
    with contextlib.redirect_stdout(io.StringIO()):
        env = SiteEnv(tmp, world=world).start()
    procs = []
    try:
        time.sleep(1.1)  # the registry refuses requests signed in its first second
        if witnesses:
            _post_policy(env, world)
        for site in SITES:
            extra = {"witness_key_file": str(tmp / "keys" / f"{site}.witness.key")}
            config = env.write_config(
                site,
                allowed_images=[r"127\.0\.0\.1:5000/pht-bench/noop:1"],
                poll_wait_s=25,
                limits={"timeout_s": 60, "memory_mb": 64},
                **(extra if witnesses else {}),
            )
            procs.append(env.spawn(config))
        analyst = env.analyst()
        watch = Watch(env.client("alice"))
        warm = analyst.post(NOOP, {}, ["site-a"])
        watch.until(lambda: warm in watch.started, 120)
        ids = []
        for _ in range(tasks):
            task = analyst.post(NOOP, {}, ["site-a"])
            watch.until(lambda t=task: t in watch.started, 60)  # type: ignore[misc]
            ids.append(task)
        print(f"   phases ({'witnesses' if witnesses else 'baseline'}): {watch.phases(ids)}")
        return [watch.start_latency(t) for t in ids]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        env.stop()


def _append_rate(url: str, key_: SigningKey, origin: str, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * 8

    def worker(slot: int) -> None:
        with Client(url, key_) as client:
            n = 0
            while time.monotonic() < stop:
                body = Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": n})
                event = new_event(body, ledger=origin, author=key_.key_id)
                client.post_event(SignedEvent.sign(event, key_))
                n += 1
            counts[slot] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def _cosigners(url: str, world: World, names: list[str], stop: Any) -> list[int]:
    """Each simulated witness cosigns the newest checkpoint once a second; returns counts."""
    sent = [0, 0]  # accepted, refused
    clients = {n: Client(url, world.keys[n]) for n in names}
    reader = Client(url)
    pool = ThreadPoolExecutor(max_workers=10)
    last = [0]

    def one_second() -> None:
        note = reader.checkpoint()
        checkpoint = Checkpoint.parse_body(note.split(b"\n\n")[0] + b"\n")
        size = checkpoint.size
        if size == last[0]:
            return  # nothing new to cosign (a witness cosigns a checkpoint once)
        last[0] = size

        def send(name: str) -> None:
            line = cosign(checkpoint, World.witness_signer(name), name=name, time=int(time.time()))
            try:
                clients[name].post_cosignature(size, line)
                sent[0] += 1
            except Exception:  # counted, not fatal
                sent[1] += 1

        list(pool.map(send, names))  # independent witnesses send at about the same time

    try:
        while not stop.is_set():
            start = time.monotonic()
            one_second()
            stop.wait(max(0.0, 1.0 - (time.monotonic() - start)))
    finally:
        pool.shutdown()
        for client in clients.values():
            client.close()
        reader.close()
    return sent


def _cosigners_to(out: Any, url: str, world: World, names: list[str], stop: Any) -> None:
    # In a consortium the witnesses are other machines. Here they share two cores with the
    # registry and the posting threads, so their client work (signing, HTTP) runs at a lower
    # priority, not to be counted as the registry's cost; the rate they reach is printed.
    os.nice(10)
    out.put(_cosigners(url, world, names, stop))


def registry_figures(
    tmp: Path, seconds: float, witnesses: int
) -> tuple[float, float, list[int], str]:
    world = World(witnesses=True)
    names = [f"w{i:02d}" for i in range(witnesses)]
    for name in names:  # simulated witnesses: auditors that publish witness keys
        world.keys[name], world.roles[name] = key(name), Role.AUDITOR
    tmp.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        data = _init_with_witnesses(tmp, world, names)
    registry = RegistryProcess(data, threads=16)
    registry.start()
    try:
        time.sleep(1.1)
        _append_rate(registry.url, world.keys["alice"], world.origin, 2)  # warm up
        bases, loads, counts = [], [], [0, 0]
        for _ in range(ROUNDS):  # alternated, so that drift hits both alike
            bases.append(_append_rate(registry.url, world.keys["alice"], world.origin, seconds))
            # The witnesses run in a process of their own, so that their client work does not
            # take the append workers' interpreter lock (it is not the registry's cost).
            context = multiprocessing.get_context("fork")
            stop = context.Event()
            out = context.Queue()
            proc = context.Process(
                target=_cosigners_to, args=(out, registry.url, world, names, stop)
            )
            proc.start()
            time.sleep(1.0)
            loads.append(_append_rate(registry.url, world.keys["alice"], world.origin, seconds))
            stop.set()
            result = [out.get(timeout=60)]
            proc.join(30)
            counts = [counts[0] + result[0][0], counts[1] + result[0][1]]
        share = cpu_share(registry, world, names, seconds)
        return statistics.median(bases), statistics.median(loads), counts, share
    finally:
        registry.stop()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process ``pid`` has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(registry: RegistryProcess, world: World, names: list[str], seconds: float) -> str:
    """B': what 50 cosignatures a second cost the registry, from its own CPU accounting.

    The throughput figure above shares two cores between the registry, the 8 posting threads and
    the simulated witnesses, so the witnesses' *client* work (signing, HTTP) shows up as registry
    slowdown. Here the registry's own CPU time is read from ``/proc``: per append while 8 threads
    post at full speed, and per cosignature while the witnesses cosign 20 checkpoints in a row
    (nothing else running). The registry spends at most one core's worth of interpreter time
    (the GIL), so the share of its append capacity that ``len(names)`` cosignatures a second take
    is ``len(names) * cpu_per_cosignature / cpu_per_second_appending``.
    """
    assert registry.proc is not None
    pid, alice = registry.proc.pid, world.keys["alice"]
    before, start = _cpu_seconds(pid), time.monotonic()
    rate = _append_rate(registry.url, alice, world.origin, seconds)
    busy = (_cpu_seconds(pid) - before) / (time.monotonic() - start)
    per_append = busy / rate
    sizes = []
    with Client(registry.url, alice) as client:
        for n in range(20):  # appended one at a time: each is signed under a checkpoint of its own
            body = Task(image="myconsortium/avg:1", sites=("site-a",), config={"c": n})
            event = new_event(body, ledger=world.origin, author=alice.key_id)
            client.post_event(SignedEvent.sign(event, alice))
            sizes.append(Checkpoint.parse_body(client.checkpoint().split(b"\n\n")[0] + b"\n"))
    requests_ = []  # signed before the clock starts: only the registry's work is counted
    for checkpoint in sizes:
        for name in names:
            line = cosign(checkpoint, World.witness_signer(name), name=name, time=int(time.time()))
            requests_.append((name, checkpoint.size, line))
    clients = {n: Client(registry.url, world.keys[n]) for n in names}
    try:
        before = _cpu_seconds(pid)
        taken = sum(clients[n].post_cosignature(size, line) for n, size, line in requests_)
        per_cosignature = (_cpu_seconds(pid) - before) / len(requests_)
    finally:
        for client in clients.values():
            client.close()
    share = len(names) * per_cosignature / busy
    return (
        f"B' registry CPU: {per_append * 1e3:.2f} ms per append ({busy:.2f} CPU-s/s at "
        f"{rate:.0f} appends/s), {per_cosignature * 1e3:.2f} ms per cosignature ({taken} of "
        f"{len(requests_)} taken): {len(names)} a second take {100 * share:.1f}% of the append "
        f"capacity (target < 5%)"
    )


def _init_with_witnesses(tmp: Path, world: World, names: list[str]) -> Path:
    """``init_registry``, with the simulated witnesses' keys in the members file."""
    keys = tmp / "keys"
    keys.mkdir()
    members = []
    for name, signing_key in world.keys.items():
        signing_key.save(keys / f"{name}.key")
        if name == "admin":
            continue
        member = {
            "name": name,
            "role": world.roles[name].value,
            "public_key": signing_key.public.b64(),
        }
        if name in names or world.roles[name] is Role.SITE:
            member["witness_key"] = world.witness_key_text(name)
        members.append(member)
    (tmp / "members.json").write_text(json.dumps(members))
    data = tmp / "data"
    argv = ["-q", "init", "--data", str(data), "--origin", world.origin]
    argv += ["--admin-key", str(keys / "admin.key"), "--members", str(tmp / "members.json")]
    assert pht(argv) == 0
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=30, help="tasks per site run")
    parser.add_argument("--seconds", type=float, default=10.0, help="append run length")
    parser.add_argument("--witnesses", type=int, default=50, help="simulated witnesses")
    parser.add_argument("--skip-sites", action="store_true", help="only figure B")
    args = parser.parse_args()
    os.umask(0o022)
    with tempfile.TemporaryDirectory(prefix="pht-witness-bench-") as folder:
        tmp = Path(folder)
        if not args.skip_sites:
            client = docker.from_env(timeout=120)
            build_noop(client)
            client.close()
            plain = site_latencies(tmp / "plain", args.tasks, witnesses=False)
            witnessed = site_latencies(tmp / "witnessed", args.tasks, witnesses=True)
            p50a, p50b = percentile(plain, 0.5) * 1000, percentile(witnessed, 0.5) * 1000
            print(
                f"A  append -> container start - pull, p50: baseline {p50a:6.0f} ms, 3 sites "
                f"witnessing with a quorum of 2 {p50b:6.0f} ms: +{p50b - p50a:.0f} ms "
                f"(target <= +100 ms; p99 {percentile(plain, 0.99) * 1000:.0f} / "
                f"{percentile(witnessed, 0.99) * 1000:.0f} ms; n={len(plain)})"
            )
        base, loaded, (accepted, refused), share = registry_figures(
            tmp / "reg", args.seconds, args.witnesses
        )
        print(
            f"B  appends/s: baseline {base:7.1f}, with {args.witnesses} witnesses cosigning once "
            f"a second {loaded:7.1f}: {100 * (1 - loaded / base):+.1f}% slower (target < 5%); "
            f"{accepted} cosignatures taken ({accepted / (ROUNDS * (args.seconds + 1)):.0f}/s), "
            f"{refused} refused"
        )
        print(share)


if __name__ == "__main__":
    main()
