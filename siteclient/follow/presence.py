"""The site's heartbeat: every few seconds, a signed report to the registry of how the site is.

``siteclient follow`` starts :class:`Heartbeats` beside the follower: a thread of its own that
every ``interval`` seconds sends ``POST /v1/heartbeats`` (:class:`api.wire.heartbeat.Heartbeat`)
with the software version, the ledger size the follower has verified, the task containers
running, and whether the Docker engine and the SPARQL endpoint answer. It never blocks the
follower: it only reads the follower's size and the agent's count, and the two health checks run
in threads of their own with a timeout, cached for ``check_every`` seconds (a hung engine is
reported as not answering, and checked again once the hung check returns). A heartbeat that does
not get through is logged once and retried at the next beat; nothing is queued.

The registry keeps only the latest heartbeat per site, in memory (:mod:`api.registry.presence`);
heartbeats are not ledger history. :meth:`Heartbeats.stop` returns within a fraction of a second
(a beat in flight is abandoned). ``follow --once`` sends none.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import metadata

import requests

from api.client.registry import Client
from api.client.transport import RetryPolicy
from api.errors import ApiError
from api.wire.heartbeat import Heartbeat
from crypto import SigningKey
from ledger.events import format_time
from siteclient.errors import SiteClientError

log = logging.getLogger(__name__)

INTERVAL_S = 5.0
CHECK_EVERY_S = 15.0
CHECK_TIMEOUT_S = 2.0


def version() -> str:
    try:
        return metadata.version("pht")
    except metadata.PackageNotFoundError:
        return "unknown"


class CachedCheck:
    """A yes/no health check, run in a thread of its own at most every ``every`` seconds; its
    last answer is read without waiting (False until the first answer; a check still running
    after ``timeout`` counts as False)."""

    def __init__(
        self,
        check: Callable[[], bool],
        *,
        every: float = CHECK_EVERY_S,
        timeout: float = CHECK_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._every = every
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._value = False
        self._checked_at: float | None = None
        self._started_at: float | None = None  # set while a check runs

    def value(self) -> bool:
        now = self._clock()
        with self._lock:
            if self._started_at is not None:  # a check is running
                if now - self._started_at > self._timeout:
                    self._value = False  # hung: not answering
                return self._value
            if self._checked_at is not None and now - self._checked_at < self._every:
                return self._value
            self._started_at = now
            done = threading.Event()
            threading.Thread(
                target=self._run, args=(done,), name="health-check", daemon=True
            ).start()
        done.wait(min(self._timeout, 0.5))  # a quick answer makes this beat's report
        with self._lock:
            return self._value

    def _run(self, done: threading.Event) -> None:
        try:
            answer = bool(self._check())
        except Exception:  # any failure of a health check means "does not answer"
            answer = False
        with self._lock:
            self._value = answer
            self._checked_at = self._clock()
            self._started_at = None
        done.set()


def sparql_answers(endpoint: str, timeout: float = CHECK_TIMEOUT_S) -> bool:
    """Whether the SPARQL endpoint answers an ``ASK {}`` (any answer below 500 counts)."""
    try:
        resp = requests.get(
            endpoint,
            params={"query": "ASK {}"},
            headers={"Accept": "application/sparql-results+json"},
            timeout=timeout,
        )
        resp.close()
    except requests.RequestException:
        return False
    return resp.status_code < 500


class Heartbeats:
    """The heartbeat thread. ``verified_size`` and ``running`` are read at each beat."""

    def __init__(
        self,
        *,
        site: str,
        send: Callable[[Heartbeat], None],
        verified_size: Callable[[], int],
        running: Callable[[], int],
        docker: Callable[[], bool],
        sparql: Callable[[], bool | None],
        interval: float = INTERVAL_S,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._site = site
        self._send = send
        self._verified_size = verified_size
        self._running = running
        self._docker = docker
        self._sparql = sparql
        self._interval = interval
        self._now = now
        self._close = close
        self._stop = threading.Event()
        self._last_sent: datetime | None = None
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    @classmethod
    def for_site(
        cls,
        *,
        site: str,
        registry: str,
        key: SigningKey,
        sparql_endpoint: str | None,
        verified_size: Callable[[], int],
        running: Callable[[], int],
        ping_docker: Callable[[], object],
        interval: float = INTERVAL_S,
    ) -> Heartbeats:
        """Heartbeats of ``site`` to ``registry``, on a client of their own (one attempt, short
        timeouts: a slow registry delays a beat, never the follower)."""
        client = Client(
            registry,
            key,
            timeout=min(3.0, interval),
            connect_timeout=min(2.0, interval),
            retry=RetryPolicy(attempts=1),
        )

        def ping() -> bool:
            ping_docker()
            return True

        return cls(
            site=site,
            send=client.heartbeat,
            verified_size=verified_size,
            running=running,
            docker=CachedCheck(ping).value,
            sparql=(
                (lambda: None)
                if sparql_endpoint is None
                else CachedCheck(lambda: sparql_answers(sparql_endpoint)).value
            ),
            interval=interval,
            close=client.close,
        )

    def start(self) -> Heartbeats:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(0.2)  # a beat in flight is abandoned (daemon thread)
        self._close()

    def beat(self) -> Heartbeat:
        """Send one heartbeat now; return it (raises the client's errors)."""
        sent_at = self._now()
        if self._last_sent is not None and sent_at <= self._last_sent:
            sent_at = self._last_sent + timedelta(microseconds=1)  # strictly later than the last
        heartbeat = Heartbeat(
            site=self._site,
            version=version(),
            verified_size=self._verified_size(),
            running=self._running(),
            docker=self._docker(),
            sparql=self._sparql(),
            sent_at=format_time(sent_at),
        )
        self._last_sent = sent_at
        self._send(heartbeat)
        return heartbeat

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
                if self._failing:
                    log.info("heartbeats reach the registry again")
                self._failing = False
            except (ApiError, SiteClientError) as exc:
                if self._stop.is_set():
                    return  # stopped mid-beat: the client was closed under it
                if not self._failing:
                    log.warning(
                        "heartbeat not delivered (retried every %g s): %s", self._interval, exc
                    )
                self._failing = True
            self._stop.wait(self._interval)
