"""A real registry: ``pht init`` into a temp directory, then ``pht serve`` as a subprocess on an
ephemeral loopback port (used by the integration, fuzz and fault tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cli.main import main as pht
from tests.ledger.factory import World


def init_registry(tmp: Path, world: World, *, store: str | None = None) -> Path:
    """Write every member's key file and the members file; run ``pht init``; return the data dir.
    With ``world.witnesses`` the sites' witness keys go to ``keys/<site>.witness.key`` and their
    verifier keys into the members file. ``store``: ``pht init --store`` (a PostgreSQL DSN)."""
    keys = tmp / "keys"
    keys.mkdir()
    members = []
    for name, signing_key in world.keys.items():
        signing_key.save(keys / f"{name}.key")
        if name != "admin":
            member = {
                "name": name,
                "role": world.roles[name].value,
                "public_key": signing_key.public.b64(),
            }
            if name in world.orgs:
                member["organization"] = world.orgs[name]
            if world.witnesses and world.roles[name].value == "site":
                world.witness_signer(name).save(keys / f"{name}.witness.key")
                member["witness_key"] = world.witness_key_text(name)
            members.append(member)
    (tmp / "members.json").write_text(json.dumps(members))
    data = tmp / "data"
    code = pht(
        [
            "-q",
            "init",
            "--data",
            str(data),
            "--origin",
            world.origin,
            "--admin-key",
            str(keys / "admin.key"),
            "--members",
            str(tmp / "members.json"),
            *(["--store", store] if store else []),
        ]
    )
    assert code == 0
    return data


class RegistryProcess:
    """``pht serve --data DATA [--store DSN]`` in a child process; ``url`` once it listens."""

    def __init__(
        self,
        data: Path,
        *,
        threads: int = 12,
        log: Path | None = None,
        extra: tuple[str, ...] = (),
        store: str | None = None,
        public_url: str | None = None,
    ) -> None:
        self.data = data
        self.store = store
        self.public_url = public_url
        self.threads = threads
        self.extra = extra  # more `pht serve` arguments
        self.log = log if log is not None else data.parent / "serve.log"
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> str:
        assert self.proc is None or self.proc.poll() is not None
        argv = [
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            "--data",
            str(self.data),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--threads",
            str(self.threads),
            *self.extra,
            *(["--store", self.store] if self.store else []),
            *(["--public-url", self.public_url] if self.public_url else []),
        ]
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=Path(__file__).resolve().parents[2],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        line = _read_line(self.proc, timeout)
        if not line.startswith("listening on "):
            self.kill()
            raise RuntimeError(f"pht serve did not start: {line!r}; see {self.log}")
        self.url = line.removeprefix("listening on ").strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's first stdout line, or "" when it exits or stays silent for ``timeout``."""
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    deadline = time.monotonic() + timeout
    while reader.is_alive() and time.monotonic() < deadline and proc.poll() is None:
        reader.join(0.05)
    reader.join(0.5)
    return lines[0] if lines else ""
