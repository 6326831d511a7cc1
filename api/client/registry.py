"""The registry's HTTP client, used by the CLI, the site client and the researcher's Analyst.

- Every call goes through one :class:`~api.client.transport.SignedTransport`: signed afresh per
  attempt with the member's key (a client without a key reads only the public resources),
  retried with backoff, problem documents raised as :mod:`api.errors` exceptions. Every call is
  idempotent (GETs; PUT of a content-addressed blob; POST of a signed event, which the registry
  appends once and answers 200 with the same entry when posted again), so every call is retried.
- A long-poll's read timeout is its wait plus the usual timeout.
- Answers are read strictly (:mod:`api.client.answers`); blobs are checked against their hash.
  What is *trusted* is decided by the caller: this client only guarantees well-formed values.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from api.client.answers import (
    Appended,
    Page,
    SiteList,
    TaskView,
    appended,
    entry_at,
    field_int,
    hex64,
    json_answer,
    page,
    proof_hashes,
    site_list,
    task_view,
)
from api.client.transport import RetryPolicy, SignedTransport, retry_after
from api.errors import ProtocolError, TransportError
from api.wire.heartbeat import Heartbeat
from api.wire.pages import page_records
from crypto import SigningKey
from ledger.canonical import canonical_bytes as json_canonical
from ledger.events import Entry, SignedEvent

CHUNK = 1024 * 1024


class Client:
    """A registry client for one member key (or none, for the public resources only)."""

    def __init__(
        self,
        base_url: str,
        key: SigningKey | None = None,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.05,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
        pool_size: int = 10,
        session: requests.Session | None = None,
    ) -> None:
        self._http = SignedTransport(
            base_url,
            key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retry=retry,
            clock=clock,
            sleep=sleep,
            nonce=nonce,
            pool_size=pool_size,
            session=session,
        )
        self.base_url = self._http.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public resources

    def health(self) -> int:
        """The ledger's size, if the registry is up."""
        return field_int(self._get_json("/healthz"), "size")

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note (verify it with ``ledger.checkpoint``)."""
        return self._http.request("GET", "/v1/checkpoint").content

    def cosigned_checkpoint(self) -> bytes:
        """The newest checkpoint witnesses cosigned, with every cosignature line (DESIGN 12)."""
        return self._http.request("GET", "/v1/checkpoint/cosigned").content

    def post_cosignature(self, size: int, line: str) -> bool:
        """Send a cosignature/v1 line for the checkpoint of ``size``; True when it is new to the
        registry (a retry of one it holds answers False)."""
        body = json_canonical({"size": size, "cosignature": line})
        resp = self._http.request(
            "POST", "/v1/cosignatures", body=body, content_type="application/json"
        )
        return resp.status_code == 201

    def openapi(self) -> dict[str, Any]:
        value = self._get_json("/openapi.json")
        if not isinstance(value, dict):
            raise ProtocolError("the OpenAPI document is not a JSON object")
        return value

    # ---- events

    def post_event(self, signed: SignedEvent) -> Appended:
        """Append ``signed``; retried safely (the registry appends an event once)."""
        resp = self._http.request(
            "POST", "/v1/events", body=signed.canonical(), content_type="application/json"
        )
        answer = appended(_json(resp), created=resp.status_code == 201)
        if answer.event_id != signed.event.id:
            raise ProtocolError(
                f"posted event {signed.event.id[:16]}, registry answered for {answer.event_id[:16]}"
            )
        return answer

    def entries(self, start: int = 0, limit: int = 100, *, wait: int = 0) -> Page:
        """Entries from ``start``; with ``wait`` > 0 the registry holds the request up to that
        many seconds until an entry at ``start`` exists."""
        params = {"from": start, "limit": limit}
        if wait:
            params["wait"] = wait
        resp = self._http.request(
            "GET", "/v1/events", params=params, read_timeout=self._http.timeout + wait
        )
        return page(_json(resp), start, retry_after(resp))

    def entry_records(self, start: int = 0, limit: int = 1000) -> tuple[list[bytes], int]:
        """The exact bytes of the entries from ``start`` as the registry stored them, and the
        ledger's size, without building entry objects: for auditors, who verify the bytes
        themselves (:func:`api.wire.pages.page_records`)."""
        resp = self._http.request("GET", "/v1/events", params={"from": start, "limit": limit})
        try:
            return page_records(resp.content)
        except ProtocolError as exc:
            raise ProtocolError(f"entries from {start}: {exc}") from exc

    def tile(self, path: str) -> bytes:
        """The C2SP tlog-tiles tile at ``path`` (``entries/000.p/5``, ``1/x001/002``; see
        :mod:`ledger.tiles`), unverified: :class:`api.client.tiles.TileReader` verifies."""
        return self._http.request("GET", f"/v1/tile/{path}").content

    def entry(self, index: int) -> Entry:
        return entry_at(self._get_json(f"/v1/events/{int(index)}"), index)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        params = {"index": index, "size": size}
        return proof_hashes(self._get_json("/v1/proofs/inclusion", params))

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        params = {"from": old, "to": new}
        return proof_hashes(self._get_json("/v1/proofs/consistency", params))

    def task(self, event_id: str) -> TaskView:
        return task_view(self._get_json(f"/v1/tasks/{hex64(event_id)}"))

    # ---- presence (api.registry.presence)

    def heartbeat(self, heartbeat: Heartbeat) -> None:
        """Send this site's heartbeat (kept by the registry in memory, never in the ledger)."""
        self._http.request(
            "POST", "/v1/heartbeats", body=heartbeat.to_json(), content_type="application/json"
        )

    def sites(self) -> SiteList:
        """Each current site's presence, as the registry last heard from it."""
        return site_list(self._get_json("/v1/sites"))

    # ---- blobs

    def put_blob(self, data: bytes | Path) -> str:
        """Upload bytes or a file (streamed); return its sha256 (hex)."""
        sha256 = _file_sha256(data) if isinstance(data, Path) else hashlib.sha256(data).hexdigest()
        self._http.request(
            "PUT",
            f"/v1/blobs/{sha256}",
            body=data,
            content_type="application/octet-stream",
            digest_sha256=sha256,
        )
        return sha256

    def get_blob(self, sha256: str, *, max_size: int = 64 * 1024 * 1024) -> bytes:
        """The blob's bytes, checked against ``sha256``."""
        with self._download(sha256) as resp:
            digest = hashlib.sha256()
            parts = []
            size = 0
            for chunk in resp.iter_content(CHUNK):
                size += len(chunk)
                if size > max_size:
                    raise ProtocolError(f"blob {sha256[:16]} is larger than {max_size} bytes")
                digest.update(chunk)
                parts.append(chunk)
        _check_digest(sha256, digest.hexdigest())
        return b"".join(parts)

    def download_blob(self, sha256: str, dest: Path) -> int:
        """Stream the blob into ``dest`` (atomically, only if its hash matches); return its size."""
        dest = Path(dest)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out, self._download(sha256) as resp:
                for chunk in resp.iter_content(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            _check_digest(sha256, digest.hexdigest())
            os.replace(tmp, dest)
            return size
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextmanager
    def _download(self, sha256: str) -> Iterator[requests.Response]:
        resp = self._http.request("GET", f"/v1/blobs/{hex64(sha256)}", stream=True)
        try:
            yield resp
        except requests.RequestException as exc:
            raise TransportError(f"download of blob {sha256[:16]} failed: {exc}") from exc
        finally:
            resp.close()

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return _json(self._http.request("GET", path, params=params))


def _json(resp: requests.Response) -> Any:
    return json_answer(resp.content, f"answer to {resp.request.method} {resp.url}")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(expected: str, found: str) -> None:
    if found != expected:
        raise ProtocolError(f"blob {expected[:16]}: the registry sent bytes hashing to {found}")
