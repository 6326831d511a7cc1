"""A real registry and a real ``siteclient serve-files`` process (site-c, the receiving site), plus
raw signed HTTP requests for the attacks a well-behaved client cannot make."""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from requests.structures import CaseInsensitiveDict

from api.wire.httpsig import RequestSigner
from crypto import SigningKey
from ledger.bodies import EventKind, Transfer
from siteclient.run.delivery import FileServiceClient
from tests.api.registry_process import _read_line
from tests.siteclient.site_env import ROOT, SiteEnv

RECEIVER = "site-c"
MAX_FILE = 1024 * 1024


@dataclass
class Message:
    method: str | None
    url: str | None
    headers: CaseInsensitiveDict[str] = field(default_factory=CaseInsensitiveDict)


@dataclass
class Answer:
    status: int
    body: Any

    @property
    def slug(self) -> str:
        kind = self.body.get("type", "") if isinstance(self.body, dict) else ""
        return str(kind).rsplit("/", 1)[-1]


def signed_headers(
    key: SigningKey,
    url: str,
    *,
    digest_sha256: str,
    method: str = "PUT",
    created: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of a PUT to ``url`` signed like FileServiceClient signs (for raw requests)."""
    message = Message(
        method, url, CaseInsensitiveDict({"Content-Type": "application/octet-stream"})
    )
    RequestSigner(key).sign(
        message,
        body=None,
        digest_sha256=digest_sha256,
        created=created if created is not None else int(time.time()),
        nonce=nonce or secrets.token_hex(16),
    )
    return dict(message.headers)


def raw_request(
    base_url: str,
    target: str | bytes,
    headers: dict[str, str],
    body: bytes = b"",
    *,
    method: str = "PUT",
    content_length: int | None = None,
    chunked: bool = False,
) -> Answer:
    """Send exactly this request line, headers and body over a socket; read the answer.

    ``content_length`` overrides the declared length (None: the body's); with ``chunked`` the
    body goes in 64 KiB chunks without a Content-Length, and sending stops early if the server
    answers or closes first.
    """
    parts = urlsplit(base_url)
    raw_target = target if isinstance(target, bytes) else target.encode("ascii")
    lines = [method.encode() + b" " + raw_target + b" HTTP/1.1", f"Host: {parts.netloc}".encode()]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    else:
        length = len(body) if content_length is None else content_length
        lines.append(f"Content-Length: {length}".encode())
    lines.append(b"Connection: close")
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            if chunked:
                for start in range(0, len(body), 65536):
                    chunk = body[start : start + 65536]
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (e.g. 413) and closed
        response = http.client.HTTPResponse(sock)
        response.begin()
        data = response.read()
    try:
        parsed: Any = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode("latin-1")
    return Answer(response.status, parsed)


@dataclass
class FileServiceEnv:
    """site-c's FileService in its own process, following the registry of ``site``."""

    site: SiteEnv
    file_service: dict[str, Any]
    proc: subprocess.Popen[str] | None = None
    url: str = ""

    @property
    def config(self) -> Path:
        return self.site.tmp / RECEIVER / "config.json"

    @property
    def inbox(self) -> Path:
        return Path(self.file_service["inbox_dir"])

    @property
    def log(self) -> Path:
        return self.site.tmp / RECEIVER / "serve-files.log"

    def start(self) -> FileServiceEnv:
        self.site.write_config(RECEIVER, file_service=self.file_service)
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "siteclient.main",
                    "serve-files",
                    "--config",
                    str(self.config),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        line = _read_line(self.proc, 30)
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"serve-files did not start: {line!r}\n{self.log.read_text()}")
        self.url = line.removeprefix("listening on ").strip()
        # Requests signed in the service's first (whole) second are refused by design: the
        # tests' raw requests sign with whole seconds, so wait for the next one to begin.
        time.sleep(math.ceil(time.time()) - time.time() + 0.01)
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, and the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        code: int | None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                code = None
        else:
            code = self.proc.returncode
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def client(self, member: str = "site-a") -> FileServiceClient:
        return FileServiceClient(self.url, self.site.world.keys[member], timeout=30)

    def task(self) -> str:
        """A fresh task (addressed to site-a), so each test has its own inbox folder."""
        return self.site.post("pht-test/partial:1", {"n": secrets.token_hex(4)})

    def wait_for_ledger(self, size: int, timeout: float = 20.0) -> None:
        """Until the FileService has verified at least ``size`` entries."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while client.health() < size:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the FileService did not reach ledger size {size}")
                time.sleep(0.05)

    def transfers(self) -> list[tuple[str, Transfer]]:
        """Every transfer in the ledger, with the key id that signed it."""
        found: list[tuple[str, Transfer]] = []
        with self.site.client() as client:
            size = client.health()
            for start in range(0, size, 1000):
                for entry in client.entries(start, 1000).entries:
                    event = entry.event.event
                    if event.kind is EventKind.TRANSFER:
                        assert isinstance(event.body, Transfer)
                        found.append((event.author, event.body))
        return found

    def stored(self, task: str) -> list[Path]:
        """Every file under the task's inbox folder (bytes, temp files, receipts)."""
        folder = self.inbox / task
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@contextmanager
def mounted_tmpfs(path: Path, *, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (a disk that fills up), unmounted afterwards; skips the test
    when it cannot be mounted (not root, no mount permission in this container)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
