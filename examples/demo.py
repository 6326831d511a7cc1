"""The full federated demo: a registry, three hospital sites, an iterative analysis, an audit.

    python3 -m examples.demo [--patients N] [--keep]

1. Creates the consortium's keys and a registry (``pht init``, ``pht serve``) on 127.0.0.1.
2. For each of three sites: writes its synthetic patients, starts its Oxigraph SPARQL endpoint on
   the site's own internal Docker network, and starts ``siteclient follow`` with the registry's
   log key and genesis pinned and an allowlist admitting only the logistic-regression image.
3. As the researcher: runs federated logistic regression by Newton-Raphson, one signed task per
   iteration (``parent`` links them), reading each site's verified gradient and Hessian, until the
   step is below 1e-10; prints the coefficients beside a pooled fit over all sites' data.
4. Posts an image no site's allowlist admits and shows each site's signed refusal.
5. Runs ``pht audit`` over HTTP as the consortium's auditor.
6. Stops everything it started and removes its files (``--keep`` keeps the folder).

Needs the services and images of ``examples/demo.sh`` (Docker engine, image registry, images).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import numpy as np

from api.client.analyst import Analyst
from api.client.answers import TaskProgress
from api.client.registry import Client
from crypto import SigningKey
from examples.logreg import central, data
from examples.sparql import endpoint

ROOT = Path(__file__).resolve().parents[1]
SITES = ("site-a", "site-b", "site-c")
LOGREG = f"{endpoint.REGISTRY}/pht-examples/logreg:1"
UNTRUSTED = f"{endpoint.REGISTRY}/untrusted/exfiltrate:1"
ALLOWED = [r"127\.0\.0\.1:5000/pht-examples/logreg:[0-9]+(@sha256:[0-9a-f]{64})?"]
AGREEMENT = 1e-8


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass
class Demo:
    """Everything one demo run starts, so that it can all be stopped."""

    folder: Path
    patients: int | None = None
    keys: dict[str, SigningKey] = field(default_factory=dict)
    registry: subprocess.Popen[str] | None = None
    url: str = ""
    genesis: str = ""
    log_key: str = ""
    sites: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    docker: docker.DockerClient | None = None

    # ---- set-up

    def make_keys(self) -> None:
        keys = self.folder / "keys"
        keys.mkdir(parents=True)
        for name in ("admin", "ana", "audrey", *SITES):
            key = SigningKey.generate()
            key.save(keys / f"{name}.key")
            self.keys[name] = key

    def start_registry(self) -> None:
        roles = {"ana": "researcher", "audrey": "auditor", **{s: "site" for s in SITES}}
        members = [
            {"name": name, "role": role, "public_key": self.keys[name].public.b64()}
            for name, role in roles.items()
        ]
        (self.folder / "members.json").write_text(json.dumps(members, indent=2))
        init = _pht(
            "init",
            "--data",
            str(self.folder / "registry"),
            "--origin",
            "pht.example/demo",
            "--name",
            "PHT demo consortium",
            "--admin-key",
            str(self.folder / "keys/admin.key"),
            "--members",
            str(self.folder / "members.json"),
        )
        summary = json.loads(init)
        self.genesis, self.log_key = summary["genesis_hash"], summary["log_key"]
        log = (self.folder / "registry.log").open("w")
        self.registry = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "serve",
                "--data",
                str(self.folder / "registry"),
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
        assert self.registry.stdout is not None
        line = self.registry.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the registry did not start; see {self.folder / 'registry.log'}")
        self.url = line.removeprefix("listening on ").strip()
        say(f"  registry  {self.url}  (genesis {self.genesis[:16]}, log key pinned by sites)")

    def start_site(self, site: str) -> None:
        assert self.docker is not None
        home = self.folder / site
        home.mkdir()
        nt = data.write_site_data(site, home, self.patients)
        network, sparql = endpoint.start_site_endpoint(self.docker, site, nt)
        config = {
            "site": site,
            "key_file": str(self.folder / "keys" / f"{site}.key"),
            "registry": self.url,
            "log_key": self.log_key,
            "genesis": self.genesis,
            "sparql_endpoint": sparql,
            "allowed_images": ALLOWED,
            "require_digest": False,
            "network": network,
            "limits": {"timeout_s": 120, "memory_mb": 256},
            "parallelism": 1,
            "state_dir": str(home / "state"),
            "work_dir": str(home / "work"),
            "poll_wait_s": 25,
        }
        (home / "config.json").write_text(json.dumps(config, indent=2))
        self.sites[site] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "siteclient.main",
                "follow",
                "--config",
                str(home / "config.json"),
            ],
            stdout=(home / "siteclient.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        rows = len(data.site_patients(site, self.patients))
        say(f"  {site:<9} {rows} patients in Oxigraph on {network}; siteclient following")

    # ---- the analysis

    def analyst(self) -> Analyst:
        key = self.keys["ana"]
        return Analyst(Client(self.url, key), key, genesis=self.genesis)

    def fit(self) -> tuple[central.Fit, list[float]]:
        analyst = self.analyst()
        image = _pinned(LOGREG)
        say(f"  image {image}")
        parent: list[str] = []
        overheads: list[float] = []

        def run_iteration(config: dict[str, Any]) -> list[Mapping[str, Any]]:
            began = time.monotonic()
            run = analyst.run(
                image,
                config,
                list(SITES),
                timeout=300,
                parent=parent[-1] if parent else None,
                label=f"logreg iteration {config['iteration']}",
                progress=_progress,
            )
            wall = time.monotonic() - began
            parent.append(run.task_id)
            states = run.states()
            if set(states.values()) != {"completed"}:
                reasons = {s: r.result.reason for s, r in run.results.items()}
                raise RuntimeError(f"iteration {config['iteration']} failed: {reasons}")
            slowest = max(
                _seconds(r.result.started, r.result.finished) for r in run.results.values()
            )
            overheads.append(wall - slowest)
            say(
                f"\r    iteration {config['iteration']}: {wall:5.2f} s "
                f"(slowest container {slowest:.2f} s, overhead {wall - slowest:.2f} s)"
            )
            return [run.json(site, "result.json") for site in SITES]

        fit = central.federated_fit(run_iteration, data.FEATURES)
        return fit, overheads

    def refusal(self) -> dict[str, str]:
        analyst = self.analyst()
        run = analyst.run(UNTRUSTED, {}, list(SITES), timeout=120)
        return {
            site: f"{r.result.state.value}: {r.result.reason}" for site, r in run.results.items()
        }

    def audit(self) -> str:
        return _pht(
            "audit",
            "--registry",
            self.url,
            "--key",
            str(self.folder / "keys/audrey.key"),
            "--workers",
            "2",
        )

    # ---- tear-down

    def stop(self) -> None:
        for proc in self.sites.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.sites.values():
            _wait(proc)
        if self.registry is not None and self.registry.poll() is None:
            self.registry.send_signal(signal.SIGTERM)
            _wait(self.registry)
            if self.registry.stdout is not None:
                self.registry.stdout.close()
        if self.docker is not None:
            for site in SITES:
                endpoint.stop_site_endpoint(self.docker, site)


def _wait(proc: subprocess.Popen[Any]) -> None:
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _pht(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "-q", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pht {argv[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _pinned(image: str) -> str:
    client = docker.from_env(timeout=30)
    try:
        return f"{image}@{client.images.get_registry_data(image).id}"
    finally:
        client.close()


def _seconds(started: str | None, finished: str | None) -> float:
    if not started or not finished:
        return 0.0
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


SHORT = {"pending": ".", "accepted": "a", "started": "r", "completed": "ok"}


def _progress(view: TaskProgress) -> None:
    """Each site's progress on one line, redrawn in place on a terminal."""
    if not sys.stdout.isatty():
        return
    states = "  ".join(
        f"{site} {SHORT.get(s.state, s.state)}" for site, s in sorted(view.sites.items())
    )
    print(f"\r    {states:<60}", end="", flush=True)


@dataclass(frozen=True)
class Outcome:
    federated: list[float]
    pooled: list[float]
    iterations: int
    overheads: list[float]
    refusals: dict[str, str]
    audit: str

    @property
    def max_difference(self) -> float:
        return float(np.max(np.abs(np.array(self.federated) - np.array(self.pooled))))


@contextmanager
def running(folder: Path, patients: int | None) -> Iterator[Demo]:
    demo = Demo(folder=folder, patients=patients)
    demo.docker = docker.from_env(timeout=120)
    try:
        yield demo
    finally:
        demo.stop()
        demo.docker.close()


def run_demo(
    folder: Path, *, patients: int | None = None, show: Callable[[str], None] = say
) -> Outcome:
    with running(folder, patients) as demo:
        show("1. the consortium: keys, registry, sites")
        demo.make_keys()
        demo.start_registry()
        for site in SITES:
            demo.start_site(site)
        show("2. federated logistic regression (Newton-Raphson), one signed task per iteration")
        fit, overheads = demo.fit()
        x, y = data.pooled_arrays(SITES, patients)
        pooled = central.pooled_fit(x, y)
        show("3. an image no allowlist admits")
        refusals = demo.refusal()
        show("4. the auditor replays the ledger")
        audit = demo.audit()
    return Outcome(
        federated=[float(v) for v in fit.coefficients],
        pooled=[float(v) for v in pooled.coefficients],
        iterations=fit.iterations,
        overheads=overheads,
        refusals=refusals,
        audit=audit,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, help="patients per site (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the demo's folder")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="pht-demo-"))
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            if not args.keep:
                stack.callback(shutil.rmtree, folder, True)
            outcome = run_demo(folder, patients=args.patients)
    except KeyboardInterrupt:
        return 130
    names = ["intercept", *data.FEATURES]
    say("")
    say(f"coefficients after {outcome.iterations} iterations (federated vs pooled over all data):")
    for name, fed, pool in zip(names, outcome.federated, outcome.pooled, strict=True):
        say(f"  {name:<10} {fed: .12f}  {pool: .12f}")
    say(f"  max |difference| = {outcome.max_difference:.2e} (must be <= {AGREEMENT:g})")
    say(
        f"  overhead per iteration above the slowest site's container: "
        f"median {float(np.median(outcome.overheads)):.2f} s, max {max(outcome.overheads):.2f} s"
    )
    say("")
    say("the untrusted image, refused by each site's allowlist:")
    for site, verdict in sorted(outcome.refusals.items()):
        say(f"  {site}: {verdict}")
    say("")
    say("pht audit:")
    say("\n".join("  " + line for line in outcome.audit.splitlines()[:12]))
    say(f"  ... ({len(outcome.audit.splitlines())} lines)")
    say("")
    say(
        f"done in {time.monotonic() - started:.0f} s"
        + (f"; files kept in {folder}" if args.keep else "")
    )
    ok = outcome.max_difference <= AGREEMENT and all(
        v.startswith("rejected") for v in outcome.refusals.values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
