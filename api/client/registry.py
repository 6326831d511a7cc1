"""The registry's HTTP client, used by the CLI and the site client.

- Every request is signed afresh (:mod:`api.wire.httpsig`: new ``created`` and nonce per attempt)
  with
  the member's key; a client without a key can only read the public resources.
- One ``requests.Session`` keeps connections alive; it is safe to share a client between threads
  for requests (urllib3's pool is thread-safe; the client keeps no other mutable state).
- Every call has a connect and a read timeout; a long-poll's read timeout is its wait plus slack.
- Retries with exponential backoff and jitter, on connection failures, timeouts and 429/502/503/504,
  for every call: they are all idempotent (GETs; PUT of a content-addressed blob; POST of a signed
  event, which the registry appends once and answers 200 with the same entry when posted again).
  A ``signature-expired`` answer is retried too, re-signed: it happens when a request was signed
  in the second the registry restarted.
- Problem documents become :mod:`api.errors` exceptions; malformed answers raise ProtocolError;
  transport failures after the last retry raise TransportError. Nothing from requests escapes.
- Entries are parsed strictly and their canonical bytes recomputed (``Entry.from_dict``); blobs are
  checked against their hash. What is *trusted* is decided by the caller (the follower verifies
  checkpoints, proofs and rules): this client only guarantees well-formed values.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests
from requests.adapters import HTTPAdapter

from api.errors import (
    ApiError,
    ProblemError,
    ProtocolError,
    RequestAuthError,
    TransportError,
    problem_error,
)
from api.wire.httpsig import RequestSigner
from crypto import SigningKey
from ledger.canonical import canonical_bytes, parse_json
from ledger.errors import LedgerError
from ledger.events import Entry, SignedEvent

RETRY_STATUSES = frozenset({429, 502, 503, 504})
CHUNK = 1024 * 1024
MAX_PROBLEM = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Appended:
    """Where a posted event sits; ``created`` is False when it was already in the ledger."""

    index: int
    event_id: str
    hash: str
    received: str
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """Entries ``[start, next)``; ``size`` is the ledger's size when the registry answered.
    ``retry_after`` is set when the registry had no long-poll slot free (come back later)."""

    entries: tuple[Entry, ...]
    next: int
    size: int
    retry_after: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteState:
    state: str
    index: int | None
    finished: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskView:
    """The registry's read model of a task (a convenience: followers replay the ledger)."""

    task: Entry
    sites: dict[str, SiteState]
    cancelled: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """``attempts`` tries in all, sleeping ``backoff * 2**n`` (capped, with jitter) in between."""

    attempts: int = 6
    backoff: float = 0.1
    max_backoff: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        return float(base * (0.5 + rng.random() / 2))


def normalize_base_url(url: str) -> str:
    """``scheme://host[:port][/prefix]`` lowercased, without a default port or trailing slash,
    so the URL the client signs is the one the registry reconstructs from the Host header."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not parts.hostname:
        raise ApiError(f"registry URL must be http(s)://host[:port], found {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ApiError(f"registry URL must not carry a query, fragment or credentials: {url!r}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}[scheme]
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


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
        self.base_url = normalize_base_url(base_url)
        self._signer = RequestSigner(key) if key is not None else None
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._retry = retry if retry is not None else RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._nonce = nonce
        self._rng = random.Random()  # noqa: S311 -- jitter, not security
        self._session = session if session is not None else requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "pht-client/1"
        # Proxy settings (HTTP_PROXY, NO_PROXY, ...) are read once, here: requests would re-read
        # the whole environment on every request, which costs more than signing it.
        self._session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public resources

    def health(self) -> int:
        """The ledger's size, if the registry is up."""
        value = self._json(self._call("GET", "/healthz"))
        return _int(value, "size")

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note (verify it with ``ledger.checkpoint``)."""
        return self._call("GET", "/v1/checkpoint").content

    def openapi(self) -> dict[str, Any]:
        value = self._json(self._call("GET", "/openapi.json"))
        if not isinstance(value, dict):
            raise ProtocolError("the OpenAPI document is not a JSON object")
        return value

    # ---- events

    def post_event(self, signed: SignedEvent) -> Appended:
        """Append ``signed``; retried safely (the registry appends an event once)."""
        resp = self._call(
            "POST", "/v1/events", body=signed.canonical(), content_type="application/json"
        )
        value = self._json(resp)
        appended = Appended(
            index=_int(value, "index"),
            event_id=_str(value, "event_id"),
            hash=_str(value, "hash"),
            received=_str(value, "received"),
            created=resp.status_code == 201,
        )
        if appended.event_id != signed.event.id:
            raise ProtocolError(
                f"posted event {signed.event.id[:16]}, registry answered for "
                f"{appended.event_id[:16]}"
            )
        return appended

    def entries(self, start: int = 0, limit: int = 100, *, wait: int = 0) -> Page:
        """Entries from ``start``; with ``wait`` > 0 the registry holds the request up to that
        many seconds until an entry at ``start`` exists."""
        params = {"from": start, "limit": limit}
        if wait:
            params["wait"] = wait
        resp = self._call("GET", "/v1/events", params=params, read_timeout=self._timeout + wait)
        value = self._json(resp)
        raw = value.get("entries") if isinstance(value, dict) else None
        if not isinstance(raw, list):
            raise ProtocolError("an entries page must hold an 'entries' array")
        entries = tuple(_entry(item, start + n) for n, item in enumerate(raw))
        page = Page(
            entries=entries,
            next=_int(value, "next"),
            size=_int(value, "size"),
            retry_after=_retry_after(resp),
        )
        if page.next != start + len(entries):
            raise ProtocolError(
                f"page from {start} with {len(entries)} entries says next={page.next}"
            )
        return page

    def entry_records(self, start: int = 0, limit: int = 1000) -> tuple[list[bytes], int]:
        """The exact bytes of the entries from ``start`` as the registry stored them, and the
        ledger's size, without building entry objects: for auditors, who verify the bytes
        themselves (canonical form, hashes, signatures, and the Merkle root against a signed
        checkpoint, so a page cut wrongly can only fail verification, never pass it)."""
        resp = self._call("GET", "/v1/events", params={"from": start, "limit": limit})
        content = resp.content
        head, tail = b'{"entries":[', b'],"next":'
        cut = content.rfind(tail)
        if content.startswith(head) and cut >= len(head):
            body = content[len(head) : cut]
            records = body.split(b",\n") if body else []
            try:
                value = json.loads(b"{" + content[cut + 2 :])
                if isinstance(value, dict) and all(b"\n" not in r for r in records):
                    return records, _int(value, "size")
            except ValueError:
                pass
        # Another layout of the same JSON: parse it and take each entry's canonical bytes.
        try:
            value = json.loads(content)
            records = [canonical_bytes(item) for item in value["entries"]]
            size = _int(value, "size")
        except (ValueError, KeyError, TypeError, LedgerError) as exc:
            raise ProtocolError(f"malformed entries page from {start}: {exc}") from exc
        return records, size

    def entry(self, index: int) -> Entry:
        return _entry(self._json(self._call("GET", f"/v1/events/{int(index)}")), index)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        value = self._json(
            self._call("GET", "/v1/proofs/inclusion", params={"index": index, "size": size})
        )
        return _hashes(value)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        value = self._json(
            self._call("GET", "/v1/proofs/consistency", params={"from": old, "to": new})
        )
        return _hashes(value)

    def task(self, event_id: str) -> TaskView:
        value = self._json(self._call("GET", f"/v1/tasks/{_hex64(event_id)}"))
        if not isinstance(value, dict):
            raise ProtocolError("a task view must be a JSON object")
        sites_value = value.get("sites")
        if not isinstance(sites_value, dict):
            raise ProtocolError("a task view must hold a 'sites' object")
        sites = {}
        for name, site in sites_value.items():
            index = site.get("index") if isinstance(site, dict) else None
            if not isinstance(site, dict) or not isinstance(site.get("state"), str):
                raise ProtocolError(f"task view: malformed state of site {name!r}")
            sites[name] = SiteState(
                state=site["state"],
                index=index if isinstance(index, int) else None,
                finished=site.get("finished") is True,
            )
        cancelled = value.get("cancelled")
        return TaskView(
            task=_entry(value.get("task"), None),
            sites=sites,
            cancelled=cancelled if isinstance(cancelled, int) else None,
        )

    # ---- blobs

    def put_blob(self, data: bytes | Path) -> str:
        """Upload bytes or a file (streamed); return its sha256 (hex)."""
        sha256 = _file_sha256(data) if isinstance(data, Path) else hashlib.sha256(data).hexdigest()
        self._call(
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
        resp = self._call("GET", f"/v1/blobs/{_hex64(sha256)}", stream=True)
        try:
            yield resp
        except requests.RequestException as exc:
            raise TransportError(f"download of blob {sha256[:16]} failed: {exc}") from exc
        finally:
            resp.close()

    # ---- the one request path

    def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Path | None = None,
        content_type: str | None = None,
        digest_sha256: str | None = None,
    ) -> requests.Response:
        """A signed request to another PHT service that speaks this protocol (a FileService):
        signed afresh on every attempt, retried like the registry's idempotent calls; a 2xx
        response, or an :class:`ApiError`."""
        return self._call(
            method, path, body=body, content_type=content_type, digest_sha256=digest_sha256
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | Path | None = None,
        content_type: str | None = None,
        digest_sha256: str | None = None,
        read_timeout: float | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send, signing and retrying; return a 2xx response or raise an ApiError."""
        url = self.base_url + path
        timeout = (self._connect_timeout, read_timeout if read_timeout else self._timeout)
        attempts = max(1, self._retry.attempts)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            with _opened(body) as payload:
                prepared = self._prepare(
                    method,
                    url,
                    params=params,
                    body=body,
                    payload=payload,
                    content_type=content_type,
                    digest_sha256=digest_sha256,
                )
                try:
                    resp = self._session.send(
                        prepared, timeout=timeout, stream=stream, allow_redirects=False
                    )
                except requests.RequestException as exc:
                    if last:
                        raise TransportError(
                            f"{method} {url}: {type(exc).__name__} after {attempts} attempts"
                        ) from exc
                    self._sleep(self._retry.delay(attempt, self._rng))
                    continue
            if 200 <= resp.status_code < 300:
                return resp
            error = _problem(resp)
            resp.close()
            retryable = resp.status_code in RETRY_STATUSES or error.slug == "signature-expired"
            if last or not retryable:
                raise error
            delay = self._retry.delay(attempt, self._rng)
            after = _retry_after(resp)
            if after is not None:
                delay = max(delay, min(after, self._retry.max_backoff))
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None,
        body: bytes | Path | None,
        payload: bytes | IO[bytes] | None,
        content_type: str | None,
        digest_sha256: str | None,
    ) -> requests.PreparedRequest:
        headers = {"Content-Type": content_type} if content_type else {}
        if isinstance(body, Path):
            headers["Content-Length"] = str(body.stat().st_size)
        request = requests.Request(method, url, params=params, data=payload, headers=headers)
        prepared = self._session.prepare_request(request)
        if self._signer is not None:
            try:
                self._signer.sign(
                    prepared,
                    body=body if isinstance(body, bytes) else None,
                    digest_sha256=digest_sha256 if isinstance(body, Path) else None,
                    created=int(self._clock()),
                    nonce=self._nonce(),
                )
            except RequestAuthError as exc:
                raise ApiError(str(exc)) from exc
        return prepared

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            return parse_json(resp.content, what=f"answer to {resp.request.method} {resp.url}")
        except LedgerError as exc:
            raise ProtocolError(str(exc)) from exc


@contextmanager
def _opened(body: bytes | Path | None) -> Iterator[bytes | IO[bytes] | None]:
    if isinstance(body, Path):
        with body.open("rb") as handle:
            yield handle
    else:
        yield body


def _problem(resp: requests.Response) -> ProblemError:
    media = resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    problem: dict[str, Any] = {"title": resp.reason or "", "status": resp.status_code}
    if media in {"application/problem+json", "application/json"}:
        try:
            value = parse_json(resp.content[:MAX_PROBLEM], what="problem document")
        except LedgerError:
            value = None
        if isinstance(value, dict):
            problem = value
    else:
        problem["detail"] = resp.text[:200]
    return problem_error(resp.status_code, problem)


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _int(value: Any, name: str) -> int:
    item = value.get(name) if isinstance(value, dict) else None
    if not isinstance(item, int) or isinstance(item, bool) or item < 0:
        raise ProtocolError(f"answer field {name!r}: expected a non-negative integer")
    return item


def _str(value: Any, name: str) -> str:
    item = value.get(name) if isinstance(value, dict) else None
    if not isinstance(item, str):
        raise ProtocolError(f"answer field {name!r}: expected a string")
    return item


def _hex64(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ApiError(f"expected 64 lowercase hex digits, found {value[:80]!r}")
    return value


def _entry(value: Any, index: int | None) -> Entry:
    try:
        entry = Entry.from_dict(value)
    except LedgerError as exc:
        raise ProtocolError(f"registry sent a malformed entry: {exc}") from exc
    if index is not None and entry.index != index:
        raise ProtocolError(f"expected entry {index}, registry sent entry {entry.index}")
    return entry


def _hashes(value: Any) -> list[bytes]:
    proof = value.get("proof") if isinstance(value, dict) else None
    if not isinstance(proof, list) or len(proof) > 64:
        raise ProtocolError("a proof must be an array of at most 64 hashes")
    try:
        return [bytes.fromhex(_hex64(item)) for item in proof]
    except (ApiError, TypeError) as exc:
        raise ProtocolError("proof hashes must be 64 lowercase hex digits") from exc


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(expected: str, found: str) -> None:
    if found != expected:
        raise ProtocolError(f"blob {expected[:16]}: the registry sent bytes hashing to {found}")
