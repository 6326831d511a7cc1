"""Sending files to a member's FileService (the client side of :mod:`siteclient.fileservice.app`).

- Requests go through the clients' one request path (:class:`api.client.transport.SignedTransport`):
  every attempt is signed afresh with the site's key (RFC 9421: a new ``created`` and nonce
  each time), covering method, target URI and ``Content-Digest``.
- An upload is idempotent: the FileService keys files by (task, sha256) and answers 200 with the
  receipt it already holds. So it is retried with exponential backoff and jitter on connection
  failures, timeouts, 429/502/503/504 (503 also when the FileService kept the file but could not
  record its transfer yet), ``signature-expired`` and ``request-replayed`` (a copy re-sent on
  the way), re-signed.
- A file is streamed from disk (hashed first, then sent with its ``Content-Length``), never read
  whole; encrypt it before (:mod:`crypto.age`): the FileService stores what it receives.
- The receipt is checked against what was sent (task, sha256, size). Every failure is a
  :class:`siteclient.errors.DeliveryError` with the status and problem type the FileService
  answered; nothing from requests escapes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from api.client.transport import RetryPolicy, SignedTransport
from api.errors import ApiError, ProblemError
from crypto import SigningKey
from ledger.bodies import OUTPUT_NAME
from siteclient.errors import DeliveryError

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
    """Uploads files to one FileService as one member (``key``), through the clients' signed,
    retrying request path (:class:`api.client.transport.SignedTransport`)."""

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
            self._http = SignedTransport(
                base_url,
                key,
                timeout=timeout,
                connect_timeout=connect_timeout,
                retry=retry,
                clock=clock,
                sleep=sleep,
                nonce=nonce,
                pool_size=4,
                session=session,
            )
        except ApiError as exc:
            raise DeliveryError(f"not a FileService URL: {exc}") from exc
        self.base_url = self._http.base_url

    def close(self) -> None:
        self._http.close()

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
        url = self.base_url + path
        try:
            return self._http.request(
                method,
                path,
                body=data,
                content_type="application/octet-stream" if data is not None else None,
                digest_sha256=sha256,
            )
        except ProblemError as exc:
            name = exc.slug or "error"
            detail = exc.detail or exc.title
            raise DeliveryError(
                f"the FileService {url} answered {exc.status} {name}: {detail[:300]}",
                status=exc.status,
                slug=exc.slug,
            ) from exc
        except ApiError as exc:
            raise DeliveryError(f"{method} {url}: {exc}") from exc
        except OSError as exc:
            raise DeliveryError(f"cannot read the file to send: {exc.strerror}") from exc


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
