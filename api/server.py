"""Serving the registry with waitress, and stopping it cleanly.

``serve`` runs in the main thread until SIGTERM or SIGINT. Then it stops accepting, ends waiting
long-polls (``stop``), lets the worker threads finish the requests they hold (up to
``grace`` seconds), and closes the ledger, which commits whatever was submitted. An append is
acknowledged only after it is durable, so nothing acknowledged can be lost by stopping, cleanly or
not.

The access log (one line per request) is buffered while serving and written in batches by a
flusher thread (:mod:`api.logbuffer`); the buffer is written out when serving stops.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from api.app import ACCESS_LOG, MAX_BLOB, MAX_BODY, create_app, printable
from api.errors import ApiError
from api.logbuffer import BufferedHandler
from api.problems import PROBLEM_JSON, problem_body, slug_for_status
from ledger.appender import Ledger

log = logging.getLogger("pht.server")
access_log = logging.getLogger(ACCESS_LOG)


def serve(
    ledger: Ledger,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    threads: int = 16,
    max_body: int = MAX_BODY,
    max_blob: int = MAX_BLOB,
    public_url: str | None = None,
    clock: Callable[[], float] = time.time,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``ledger`` until SIGTERM/SIGINT; the ledger is closed on return.

    ``threads`` is waitress's worker pool; long-polls may hold all but two of them, so appends
    always find a thread. ``on_ready`` receives the URL actually bound (``port=0`` picks one).
    """
    stop = threading.Event()
    try:
        app = create_app(
            ledger,
            clock=clock,
            max_body=max_body,
            max_blob=max_blob,
            long_poll_slots=max(1, threads - 2),
            public_url=public_url,
            stop=stop,
        )
        server = waitress.create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="pht",
            # Above our own limits, so oversized bodies get our 413 problem document.
            max_request_body_size=max_blob + max_body + 1024 * 1024,
            asyncore_use_poll=True,
            connection_limit=1000,
            channel_timeout=120,
        )
        answer_parse_errors_as_problems(server)
    except OSError as exc:
        ledger.close()
        raise ApiError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    except BaseException:
        ledger.close()
        raise
    # Long-polls fill the task queue by design; waitress would warn about it on every request.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log.info("signal %d: stopping", signum)
        stop.set()
        raise KeyboardInterrupt

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    restore_access_log = _buffer_access_log()
    try:
        url = f"http://{_host_for_url(server.effective_host)}:{server.effective_port}"
        log.info("serving %s (%d threads, ledger size %d)", url, threads, ledger.size)
        if on_ready is not None:
            on_ready(url)
        server.run()  # returns after KeyboardInterrupt, once the workers have finished
    finally:
        stop.set()
        try:
            server.close()
        finally:
            restore_access_log()
            ledger.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            log.info("stopped; ledger closed at size %d", ledger.size)


class _ProblemErrorTask(ErrorTask):  # type: ignore[misc]
    """The answer to a request waitress cannot parse (a bad Content-Length, a header line
    without a colon, headers or a body over its limits, an unsupported Transfer-Encoding),
    which never reaches the app: waitress's text/plain, said as problem+json like every other
    error, and logged like every other request."""

    def execute(self) -> None:
        error = self.request.error
        body = problem_body(slug_for_status(error.code), str(error.body)[:300])
        data = json.dumps(body, ensure_ascii=True).encode("ascii")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", PROBLEM_JSON))
        self.set_close_on_finish()
        self.content_length = len(data)
        self.write(data)
        access_log.info(
            "%s %s %s %s - -",
            self.channel.addr[0] if self.channel.addr else "-",
            printable(str(getattr(self.request, "command", None) or "-"))[:20],
            printable(str(getattr(self.request, "path", None) or "-"))[:200],
            error.code,
        )


class _ProblemChannel(HTTPChannel):  # type: ignore[misc]
    error_task_class = _ProblemErrorTask


def answer_parse_errors_as_problems(server: Any) -> None:
    """Make a waitress server (from ``waitress.create_server``) answer the requests it refuses
    before they reach the app in problem+json, with an access log line (the registry and the
    site's FileService both serve this way)."""
    listeners = [server] if hasattr(server, "channel_class") else list(server.map.values())
    for listener in listeners:
        if hasattr(listener, "channel_class"):
            listener.channel_class = _ProblemChannel


def _buffer_access_log() -> Callable[[], None]:
    """Route the access log through a :class:`BufferedHandler` in front of the handlers its
    records reach now (its own, then its ancestors'); return what undoes that, writing out every
    buffered line."""
    access = logging.getLogger(ACCESS_LOG)
    targets: list[logging.Handler] = []
    current: logging.Logger | None = access
    while current is not None:
        targets.extend(current.handlers)
        current = current.parent if current.propagate else None
    if not targets:
        return lambda: None  # logging is not configured: nothing to speed up
    buffered = BufferedHandler(targets)
    own, propagate = list(access.handlers), access.propagate
    for handler in own:
        access.removeHandler(handler)
    access.addHandler(buffered)
    access.propagate = False

    def restore() -> None:
        access.removeHandler(buffered)
        for handler in own:
            access.addHandler(handler)
        access.propagate = propagate
        buffered.close()

    return restore


def _host_for_url(host: object) -> str:
    text = str(host)
    return f"[{text}]" if ":" in text else text
