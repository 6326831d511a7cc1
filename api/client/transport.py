"""The one request path of PHT's clients: signed, retried, and mapped to :mod:`api.errors`.

- Every attempt is signed afresh (:mod:`api.wire.httpsig`: a new ``created`` and nonce) with the
  member's key; a transport without a key sends unsigned requests (public resources only).
- One ``requests.Session`` keeps connections alive; it is safe to share between threads
  (urllib3's pool is thread-safe; the transport keeps no other mutable state).
- Every call has a connect and a read timeout.
- Retries with exponential backoff and jitter, on connection failures, timeouts and
  429/502/503/504: callers send only idempotent requests (GETs; PUT of a content-addressed blob
  or file; POST of a signed event, which the registry appends once). Two refusals of the
  signature are retried too, re-signed: ``signature-expired`` (a request signed in the second the
  server restarted) and ``request-replayed``, which a request signed with a fresh nonce gets
  only when it was sent twice on the way: a load balancer re-sending it to the next replica after
  the first one died having already verified it (nginx's ``proxy_next_upstream``).
- Problem documents become :mod:`api.errors` exceptions; transport failures after the last retry
  raise TransportError. Nothing from requests escapes but the 2xx ``Response`` itself.

The registry's :class:`~api.client.registry.Client` and the site's FileService client
(:mod:`siteclient.run.delivery`) both send through :class:`SignedTransport`.
"""

from __future__ import annotations

import random
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests
from requests.adapters import HTTPAdapter

from api.errors import ApiError, ProblemError, RequestAuthError, TransportError, problem_error
from api.wire.httpsig import REQUEST_REPLAYED, SIGNATURE_EXPIRED, RequestSigner
from crypto import SigningKey
from ledger.canonical import parse_json
from ledger.errors import LedgerError

RETRY_STATUSES = frozenset({429, 502, 503, 504})
RESIGN = frozenset({SIGNATURE_EXPIRED, REQUEST_REPLAYED})  # refusals a fresh signature cures
MAX_PROBLEM = 64 * 1024


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
    so the URL the client signs is the one the server reconstructs from the Host header."""
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


class SignedTransport:
    """Signed, retried requests to one PHT server (``base_url``) as one member (or none)."""

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
        self.timeout = timeout
        self._signer = RequestSigner(key) if key is not None else None
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

    def request(
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
        """Send, signing every attempt and retrying; a 2xx response, or an :class:`ApiError`.

        A ``Path`` body is streamed from the file; pass its hex ``digest_sha256`` with it.
        """
        url = self.base_url + path
        timeout = (self._connect_timeout, read_timeout if read_timeout else self.timeout)
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
            retryable = resp.status_code in RETRY_STATUSES or error.slug in RESIGN
            if last or not retryable:
                raise error
            delay = self._retry.delay(attempt, self._rng)
            after = retry_after(resp)
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


def retry_after(resp: requests.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds (the delta form), if it has a readable one."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


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
