"""Sending files to a member's FileService (the client side of :mod:`siteclient.fileservice`).

- Every attempt is signed afresh with the site's key (RFC 9421, :class:`api.httpsig.RequestSigner`:
  a new ``created`` and nonce each time), covering method, target URI and ``Content-Digest``.
- An upload is idempotent: the FileService keys files by (task, sha256) and answers 200 with the
  receipt it already holds. So it is retried with exponential backoff and jitter on connection
  failures, timeouts, 429/502/503/504 (503 also when the FileService kept the file but could not
  record its transfer yet) and ``signature-expired``.
- A file is streamed from disk (hashed first, then sent with its ``Content-Length``), never read
  whole; encrypt it before (:mod:`crypto.age`): the FileService stores what it receives.
- The receipt is checked against what was sent (task, sha256, size). Every failure is a
  :class:`siteclient.errors.DeliveryError` with the status and problem type the FileService
  answered; nothing from requests escapes.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from api.client import RetryPolicy, normalize_base_url
from api.errors import PROBLEM_BASE, ApiError
from api.httpsig import RequestSigner
from crypto import SigningKey
from ledger.bodies import OUTPUT_NAME
from siteclient.errors import DeliveryError

RETRY_STATUSES = frozenset({429, 502, 503, 504})
CHUNK = 1024 * 1024
MAX_ANSWER = 64 * 1024
HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """A file the FileService holds, and the ledger entry of its ``transfer`` event."""

    sha256: str
    size: int
    transfer_index: int
    created: bool  # False when the FileService had received this file before


class FileServiceClient:
    """Uploads files to one FileService as one member (``key``)."""

    def __init__(
        self,
        base_url: str,
        key: SigningKey,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 3.05,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
        session: requests.Session | None = None,
    ) -> None:
        try:
            self.base_url = normalize_base_url(base_url)
        except ApiError as exc:
            raise DeliveryError(f"not a FileService URL: {exc}") from exc
        self._signer = RequestSigner(key)
        self._timeout = (connect_timeout, timeout)
        self._retry = retry if retry is not None else RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._nonce = nonce
        self._rng = random.Random()  # noqa: S311 -- jitter, not security
        self._session = session if session is not None else requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "pht-siteclient/1"
        self._session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> FileServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> int:
        """The ledger size the FileService has verified, if it is up and accepting files."""
        resp = self._send("GET", "/healthz", None, None)
        return _index(_json(resp), "ledger_size", resp.status_code)

    def upload(self, task: str, name: str | None, data: bytes | Path) -> Receipt:
        """Send ``data`` (bytes, or a file streamed from disk) as output ``name`` of ``task``.

        Raises :class:`DeliveryError` if the FileService refuses it, cannot be reached after the
        retries, or answers with a receipt for something else.
        """
        if len(task) != 64 or not set(task) <= HEX:
            raise DeliveryError(f"task: expected 64 lowercase hex digits, found {task[:80]!r}")
        if name is not None and not OUTPUT_NAME.fullmatch(name):
            raise DeliveryError(f"output name {name[:80]!r} is not [A-Za-z0-9][A-Za-z0-9._-]*")
        sha256, size = _digest(data)
        path = f"/v1/files/{task}/{sha256}" + (f"?name={quote(name)}" if name else "")
        resp = self._send("PUT", path, data, sha256)
        value = _json(resp)
        status = resp.status_code
        for key, expected in (("task", task), ("sha256", sha256), ("size", size)):
            if value.get(key) != expected:
                raise DeliveryError(
                    f"the FileService's receipt names {key} {value.get(key)!r}, sent {expected!r}",
                    status=status,
                )
        return Receipt(
            sha256=sha256,
            size=size,
            transfer_index=_index(value, "transfer_index", status),
            created=status == 201,
        )

    def _send(
        self, method: str, path: str, data: bytes | Path | None, sha256: str | None
    ) -> requests.Response:
        """Send, signing each attempt afresh and retrying; return a 2xx response."""
        url = self.base_url + path
        attempts = max(1, self._retry.attempts)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            with _opened(data) as payload:
                headers = {"Content-Type": "application/octet-stream"} if data is not None else {}
                if isinstance(data, Path):
                    headers["Content-Length"] = str(data.stat().st_size)
                prepared = self._session.prepare_request(
                    requests.Request(method, url, data=payload, headers=headers)
                )
                try:
                    self._signer.sign(
                        prepared,
                        body=None,
                        digest_sha256=sha256,
                        created=int(self._clock()),
                        nonce=self._nonce(),
                    )
                except ApiError as exc:
                    raise DeliveryError(str(exc)) from exc
                try:
                    resp = self._session.send(
                        prepared, timeout=self._timeout, allow_redirects=False
                    )
                except requests.RequestException as exc:
                    if last:
                        raise DeliveryError(
                            f"{method} {url}: {type(exc).__name__} after {attempts} attempts"
                        ) from exc
                    self._sleep(self._retry.delay(attempt, self._rng))
                    continue
            if 200 <= resp.status_code < 300:
                return resp
            error = _refusal(resp, url)
            retryable = resp.status_code in RETRY_STATUSES or error.slug == "signature-expired"
            if last or not retryable:
                raise error
            self._sleep(self._retry.delay(attempt, self._rng))
        raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def _opened(data: bytes | Path | None) -> Iterator[bytes | IO[bytes] | None]:
    if isinstance(data, Path):
        try:
            handle = data.open("rb")
        except OSError as exc:
            raise DeliveryError(f"cannot read {data}: {exc.strerror}") from exc
        with handle:
            yield handle
    else:
        yield data


def _digest(data: bytes | Path) -> tuple[str, int]:
    if not isinstance(data, Path):
        return hashlib.sha256(data).hexdigest(), len(data)
    digest = hashlib.sha256()
    size = 0
    try:
        with data.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise DeliveryError(f"cannot read {data}: {exc.strerror}") from exc
    return digest.hexdigest(), size


def _refusal(resp: requests.Response, url: str) -> DeliveryError:
    status = resp.status_code
    media = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    slug, detail = "", (resp.reason or "")
    if media in {"application/problem+json", "application/json"}:
        try:
            problem = json.loads(resp.content[:MAX_ANSWER])
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            kind = str(problem.get("type", ""))
            slug = kind.removeprefix(PROBLEM_BASE) if kind.startswith(PROBLEM_BASE) else ""
            detail = str(problem.get("detail") or problem.get("title") or detail)
    resp.close()
    name = slug or "error"
    return DeliveryError(
        f"the FileService {url} answered {status} {name}: {detail[:300]}", status=status, slug=slug
    )


def _json(resp: requests.Response) -> dict[str, Any]:
    status = resp.status_code
    try:
        value = json.loads(resp.content[:MAX_ANSWER])
    except ValueError as exc:
        raise DeliveryError("the FileService's answer is not JSON", status=status) from exc
    if not isinstance(value, dict):
        raise DeliveryError("the FileService's answer is not a JSON object", status=status)
    return value


def _index(value: dict[str, Any], name: str, status: int) -> int:
    item = value.get(name)
    if not isinstance(item, int) or isinstance(item, bool) or item < 0:
        raise DeliveryError(f"the FileService's answer lacks a valid {name!r}", status=status)
    return item
