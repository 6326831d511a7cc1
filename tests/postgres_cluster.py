"""A PostgreSQL cluster of one test's own, for tests that stop and start the database (the shared
cluster of ``.ci/services.sh`` serves other tests and must keep running).

Debian's binaries (``/usr/lib/postgresql/<version>/bin``): ``initdb`` into a temporary directory
and ``pg_ctl`` as the ``postgres`` user (``runuser``, so the test runs as root, as CI does), on a
loopback port of its own, trust auth for 127.0.0.1. Without the binaries, the user or root the
tests skip saying how to get them; under ``CI=true`` they fail (:func:`tests.postgres_db.
unavailable`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.api.replica_cluster import free_port
from tests.postgres_db import unavailable

HINT = "apt-get install postgresql (.ci/setup does) and run the tests as root"
WAIT = 60


def _binaries() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not found:
        unavailable("PostgreSQL's binaries are not in /usr/lib/postgresql/*/bin", hint=HINT)
    return found[-1].parent


class Cluster:
    """A cluster in ``root``/data listening on 127.0.0.1:``port``; ``dsn`` names its database
    ``postgres`` as the ``postgres`` superuser."""

    def __init__(self, root: Path, port: int, bin_dir: Path) -> None:
        self.root = root
        self.port = port
        self._bin = bin_dir
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _pg(self, *argv: str) -> None:
        log = (self.root / "commands.log").open("a")
        with log:
            done = subprocess.run(
                ["runuser", "-u", "postgres", "--", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=WAIT + 30,
                check=False,
            )
        if done.returncode != 0:
            server = self.root / "server.log"
            tail = server.read_text()[-2000:] if server.exists() else ""
            raise AssertionError(f"{argv[0]} {argv[1:]} failed; server log ends:\n{tail}")

    def init(self) -> None:
        self._pg(
            str(self._bin / "initdb"),
            "-D",
            str(self.root / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )

    def start(self) -> None:
        """Start the cluster and wait until it accepts connections."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        self._pg(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            str(WAIT),
            "-o",
            options,
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``: ``fast`` ends sessions and shuts down cleanly, ``immediate``
        kills the server outright (a crash: the next start recovers from the WAL)."""
        self._pg(str(self._bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.root / "data" / "postmaster.pid").exists()


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A new cluster, started; stopped and removed afterwards."""
    bin_dir = _binaries()
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("there is no postgres user", hint=HINT)
    if os.geteuid() != 0:
        unavailable("starting a PostgreSQL cluster of the test's own needs root", hint=HINT)
    root = Path(tempfile.mkdtemp(prefix="pht-own-pg-"))
    try:
        os.chown(root, user.pw_uid, user.pw_gid)
        cluster = Cluster(root, free_port(), bin_dir)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        except BaseException:
            server = root / "server.log"  # pytest shows it with the failure
            tail = server.read_text(errors="replace")[-4000:] if server.exists() else "(none)"
            print(f"--- the PostgreSQL server's log ends:\n{tail}")
            raise
        finally:
            if cluster.running():
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
