"""Run the federated logistic regression locally, straight through Docker (no registry, no site
client), and check it against the pooled fit.

For each site this starts its SPARQL endpoint on its own internal network, then iterates
Newton-Raphson: each iteration runs the ``pht-examples/logreg`` image once per site, in parallel,
locked down the way a site client runs it (read-only config at ``/pht/input/config.json``, a fresh
output folder owned by nobody at ``/pht/output``, ``SPARQL_ENDPOINT``, the site's network, user
65534, read-only root, no capabilities), sums the results and updates the coefficients until the
step is below 1e-10. The coefficients must equal the pooled fit's within 1e-8.

Usage (after ``examples/images/build.sh``; as root, for the output folders' owner)::

    python3 -m examples.logreg.run_local [--patients N] [--keep] [--no-isolation-check]

Prints each iteration's timings: every site's container run time (Docker's start to exit), the
iteration's wall time, and the overhead above the slowest site.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import numpy as np
from docker.errors import ImageNotFound
from docker.types import Mount

from examples.logreg import central, data
from examples.sparql import endpoint

LOGREG_IMAGE = f"{endpoint.REGISTRY}/pht-examples/logreg:1"
NOBODY = 65534
AGREEMENT = 1e-8


@dataclass(frozen=True)
class SiteRun:
    """One site's container in one iteration, with where its time went (seconds)."""

    site: str
    result: dict[str, Any]
    log: str  # the algorithm's last stderr line
    create_s: float  # folders, config and ``containers.create``
    run_s: float  # ``start()`` called until the exit is seen: the site's container run time
    start_s: float  # of which the engine's start latency (until Docker's StartedAt)
    process_s: float  # of which the process itself (Docker's StartedAt to FinishedAt)
    collect_s: float  # state, logs and result.json read back


def _docker_time(stamp: str) -> datetime:
    """Docker's RFC 3339 time with nanoseconds, cut to the microseconds Python parses."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def run_site(
    client: docker.DockerClient,
    site: str,
    config: Mapping[str, Any],
    *,
    workdir: Path,
    network: str,
    url: str,
    remover: Executor,
    image: str = LOGREG_IMAGE,
    timeout_s: float = 120.0,
) -> SiteRun:
    """Run the algorithm image once at ``site`` with ``config``; return its parsed result.

    The container is removed by ``remover`` in the background: once the result is read, removing
    it is no longer on the researcher's path.
    """
    t0 = time.perf_counter()
    task_dir = workdir / f"iter-{config['iteration']:02d}" / site
    output = task_dir / "output"
    output.mkdir(parents=True)
    os.chown(output, NOBODY, NOBODY)
    output.chmod(0o700)
    config_path = task_dir / "config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")
    config_path.chmod(0o644)
    container = client.containers.create(
        image,
        environment={
            "SPARQL_ENDPOINT": url,
            "PHT_TASK": f"local-{config['iteration']}",
            "PHT_SITE": site,
        },
        mounts=[
            Mount("/pht/input/config.json", str(config_path), type="bind", read_only=True),
            Mount("/pht/output", str(output), type="bind"),
        ],
        network=network,
        user=f"{NOBODY}:{NOBODY}",
        read_only=True,
        tmpfs={"/tmp": "size=16m,mode=1777"},  # noqa: S108 - the container's own /tmp
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit="512m",
        pids_limit=64,
        nano_cpus=1_000_000_000,
        labels={endpoint.LABEL: "logreg-local", endpoint.SITE_LABEL: site},
    )
    t1 = time.perf_counter()
    started_at = datetime.now(UTC)
    try:
        container.start()
        status = container.wait(timeout=timeout_s)
        t2 = time.perf_counter()
        container.reload()
        state = container.attrs["State"]
        logs = container.logs().decode("utf-8", "replace").strip()
        if status.get("StatusCode") != 0:
            raise RuntimeError(f"{site}: container exited {status.get('StatusCode')}: {logs}")
        result = json.loads((output / "result.json").read_text(encoding="utf-8"))
        t3 = time.perf_counter()
    finally:
        remover.submit(container.remove, force=True)
    process_s = (
        _docker_time(state["FinishedAt"]) - _docker_time(state["StartedAt"])
    ).total_seconds()
    start_s = (_docker_time(state["StartedAt"]) - started_at).total_seconds()
    return SiteRun(
        site=site,
        result=result,
        log=logs.splitlines()[-1] if logs else "",
        create_s=t1 - t0,
        run_s=t2 - t1,
        start_s=start_s,
        process_s=process_s,
        collect_s=t3 - t2,
    )


def _check_images(client: docker.DockerClient, images: Sequence[str]) -> None:
    for image in images:
        try:
            client.images.get(image)
        except ImageNotFound:
            raise SystemExit(
                f"run_local: image {image} is missing; run examples/images/build.sh"
            ) from None


def _start_endpoints(
    client: docker.DockerClient,
    sites: Sequence[str],
    workdir: Path,
    patients: int | None,
    pool: Executor,
) -> dict[str, tuple[str, str]]:
    """Write each site's data and start its endpoint, all sites at once."""
    t0 = time.perf_counter()
    paths = {s: data.write_site_data(s, workdir, patients) for s in sites}
    started = dict(
        zip(
            sites,
            pool.map(lambda s: endpoint.start_site_endpoint(client, s, paths[s]), sites),
            strict=True,
        )
    )
    _say(f"endpoints: {len(sites)} started and loaded in {time.perf_counter() - t0:.2f} s")
    for site, (network, url) in started.items():
        _say(f"  {site}: {url} on {network}")
    return started


def _check_isolation(client: docker.DockerClient, site: str, other_network: str) -> None:
    t0 = time.perf_counter()
    outcomes = endpoint.check_isolation(client, site, other_network)
    _say(f"isolation of {site}'s endpoint, checked in {time.perf_counter() - t0:.2f} s:")
    for where, (ok, detail) in outcomes.items():
        _say(f"  {where}: {'answers' if ok else 'refused'} ({detail})")


class _Iterations:
    """Runs one iteration at every site in parallel and keeps its timings for the report."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        started: Mapping[str, tuple[str, str]],
        workdir: Path,
        image: str,
        pool: Executor,
        remover: Executor,
    ) -> None:
        self.client, self.started, self.workdir, self.image = client, started, workdir, image
        self.pool, self.remover = pool, remover
        self.runs: list[list[SiteRun]] = []
        self.walls: list[float] = []
        self._t_start = 0.0

    def __call__(self, config: dict[str, Any]) -> list[dict[str, Any]]:
        self._t_start = time.perf_counter()
        runs = list(self.pool.map(lambda s: self._run(s, config), self.started))
        self.runs.append(runs)
        return [r.result for r in runs]

    def _run(self, site: str, config: dict[str, Any]) -> SiteRun:
        network, url = self.started[site]
        return run_site(
            self.client,
            site,
            config,
            workdir=self.workdir,
            network=network,
            url=url,
            remover=self.remover,
            image=self.image,
        )

    def header(self) -> str:
        cells = "".join(f"{s + ' run (proc)':>19}" for s in self.started)
        return f"iter{cells}   slowest     wall  overhead  max|step|"

    def on_iteration(
        self,
        iteration: int,
        beta: central.FloatArray,
        combined: central.SiteResult,
        step: central.FloatArray,
    ) -> None:
        """Called once the step is computed: the iteration's wall time ends here."""
        wall = time.perf_counter() - self._t_start
        self.walls.append(wall)
        runs = self.runs[-1]
        slowest = max(r.run_s for r in runs)
        cells = "".join(f"{r.run_s:11.3f}s ({r.process_s:.3f})" for r in runs)
        _say(
            f"{iteration:4d}{cells}  {slowest:7.3f}s {wall:7.3f}s  {wall - slowest:7.3f}s"
            f"  {np.max(np.abs(step)):.3e}"
        )

    def summary(self) -> str:
        every = [r for runs in self.runs for r in runs]
        overheads = [
            wall - max(r.run_s for r in runs)
            for runs, wall in zip(self.runs, self.walls, strict=True)
        ]

        def spread(values: Sequence[float]) -> str:
            return f"mean {np.mean(values):.3f} s, max {max(values):.3f} s"

        return (
            f"  container run (start() to exit): {spread([r.run_s for r in every])}\n"
            f"    engine start latency:          {spread([r.start_s for r in every])}\n"
            f"    process (Docker's own times):  {spread([r.process_s for r in every])}\n"
            f"  create (folder, config, create): {spread([r.create_s for r in every])}\n"
            f"  collect (state, logs, result):   {spread([r.collect_s for r in every])}\n"
            f"  overhead above the slowest site: {spread(overheads)}\n"
            f"  a site's own log line: {every[-1].log}"
        )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _compare(fed: central.Fit, pooled: central.Fit) -> float:
    """Print the coefficients side by side; return the largest difference."""
    names = ["intercept", *data.FEATURES]
    print(f"\n{'':>10} {'federated':>20} {'pooled':>20} {'true':>8}")
    for name, f, p, t in zip(
        names, fed.coefficients, pooled.coefficients, data.TRUE_COEFFICIENTS, strict=True
    ):
        print(f"{name:>10} {f:20.12f} {p:20.12f} {t:8.3f}")
    diff = float(np.max(np.abs(fed.coefficients - pooled.coefficients)))
    print(f"max |federated - pooled| = {diff:.3e} (must be <= {AGREEMENT:g})")
    return diff


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, help="patients per site (default: each site's)")
    parser.add_argument("--sites", default=",".join(data.SITES))
    parser.add_argument("--image", default=LOGREG_IMAGE)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-isolation-check", action="store_true")
    args = parser.parse_args(argv)
    sites = args.sites.split(",")
    if unknown := [s for s in sites if s not in data.SITES]:
        parser.error(f"unknown sites {unknown}; known: {', '.join(data.SITES)}")

    client = docker.from_env(timeout=120)
    _check_images(client, [args.image, endpoint.ENDPOINT_IMAGE, endpoint.PROBE_IMAGE])
    workdir = Path(tempfile.mkdtemp(prefix="pht-run-local-"))
    workdir.chmod(0o755)
    pool = ThreadPoolExecutor(max_workers=len(sites))
    remover = ThreadPoolExecutor(max_workers=1)
    try:
        started = _start_endpoints(client, sites, workdir, args.patients, pool)
        if not args.no_isolation_check and len(sites) > 1:
            _check_isolation(client, sites[0], started[sites[1]][0])
        iterations = _Iterations(
            client,
            started=started,
            workdir=workdir,
            image=args.image,
            pool=pool,
            remover=remover,
        )
        _say("\n" + iterations.header())
        t0 = time.perf_counter()
        fed = central.federated_fit(iterations, data.FEATURES, on_iteration=iterations.on_iteration)
        total = time.perf_counter() - t0
        _say(
            f"\nfederated: {fed.iterations} iterations over {fed.n} patients in {total:.2f} s\n"
            + iterations.summary()
        )
        pooled = central.pooled_fit(*data.pooled_arrays(sites, args.patients))
        if not _compare(fed, pooled) <= AGREEMENT:
            _say("run_local: FAILED: federated and pooled fits disagree")
            return 1
        return 0
    finally:
        pool.shutdown(wait=True)
        remover.shutdown(wait=True)
        for site in sites:
            endpoint.stop_site_endpoint(client, site)
        if args.keep:
            _say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
