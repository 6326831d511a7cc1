"""Several ``pht serve`` replicas on one PostgreSQL ledger, and Debian's nginx in front of them
(examples/deploy/nginx-replicas.conf rendered into a directory of the test's own): the layout the
replica and chaos tests start."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.api.registry_process import RegistryProcess

TEMPLATE = Path(__file__).resolve().parents[2] / "examples/deploy/nginx-replicas.conf"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def replica(
    tmp: Path, data: Path, name: str, dsn: str, *, public_url: str | None = None
) -> RegistryProcess:
    """Another data directory with the log key of ``data``, serving the same database."""
    own = tmp / name / "data"
    own.mkdir(parents=True)
    shutil.copy2(data / "log.key", own / "log.key")
    return RegistryProcess(own, store=dsn, public_url=public_url)


def replicas(
    tmp: Path, data: Path, dsn: str, count: int, *, public_url: str | None = None
) -> list[RegistryProcess]:
    """``count`` replicas: the first on ``data`` (where ``pht init`` ran), the others beside it."""
    made = [RegistryProcess(data, store=dsn, public_url=public_url)]
    made += [
        replica(tmp, data, f"replica-{n}", dsn, public_url=public_url) for n in range(1, count)
    ]
    return made


def health(url: str, timeout: float = 2.0) -> dict[str, object] | None:
    """A replica's ``/healthz`` document, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as resp:
            value = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        reason = "nginx not found; apt-get install nginx-light (.ci/setup does)"
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


# nginx takes a replica that failed a request out of rotation for FAIL_TIMEOUT, and answers 502
# "no live upstreams" while every replica is out: about the time a replica stays dead (the systemd
# unit restarts it after 2 s), so that replicas dying one after another do not add up to an outage.
FAIL_TIMEOUT = "2s"


@contextmanager
def nginx_in_front(tmp: Path, upstreams: list[str], port: int) -> Iterator[str]:
    """examples/deploy/nginx-replicas.conf rendered for ``upstreams`` into ``tmp`` (created),
    run on ``port``; yields its URL."""
    binary = nginx_binary()
    tmp.mkdir(parents=True, exist_ok=True)
    servers = "\n".join(
        f"        server {u.removeprefix('http://')} max_fails=1 fail_timeout={FAIL_TIMEOUT};"
        for u in upstreams
    )
    conf = (
        TEMPLATE.read_text()
        .replace("@DIR@", str(tmp))
        .replace("@UPSTREAMS@", servers)
        .replace("@LISTEN@", f"127.0.0.1:{port}")
    )
    (tmp / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(
        [binary, "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g", "daemon off;"],
        stderr=(tmp / "stderr.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (tmp / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def serving(
    tmp: Path, data: Path, dsn: str, count: int, *, nginx: bool = True
) -> Iterator[tuple[list[RegistryProcess], str]]:
    """``count`` replicas started on ``dsn`` and, with ``nginx``, nginx in front of them; yields
    the replicas and the URL clients use (nginx's, or the first replica's). Stops them all."""
    port = free_port() if nginx else 0
    public = f"http://127.0.0.1:{port}" if nginx else None
    started = replicas(tmp, data, dsn, count, public_url=public)
    try:
        for process in started:
            process.start()
        if not nginx:
            yield started, started[0].url
            return
        with nginx_in_front(tmp / "nginx", [r.url for r in started], port) as url:
            yield started, url
    except BaseException:
        for process in started:  # pytest shows it with the failure
            print(f"--- {process.url}, {process.log}: what it logged besides requests")
            print(logged_besides_requests(process.log))
        raise
    finally:
        for process in started:
            process.stop()


def logged_besides_requests(log: Path, records: int = 150) -> str:
    """The last ``records`` records of a registry's ``log`` other than access lines, each on its
    first line (a record's message says what failed; its traceback would crowd the rest out)."""
    if not log.exists():
        return "(no log)"
    text = log.read_text(errors="replace")
    kept = [
        line
        for line in text.splitlines()
        if line[:2].isdigit() and "pht.access" not in line  # a record starts with its time
    ]
    return "\n".join(kept[-records:])
