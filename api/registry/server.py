"""Serving the registry with waitress, and stopping it cleanly.

``serve`` runs in the main thread until SIGTERM or SIGINT. Then it stops accepting, ends waiting
long-polls (``stop``), lets the worker threads finish the requests they hold (up to
``grace`` seconds), and closes the ledger, which commits whatever was submitted. An append is
acknowledged only after it is durable, so nothing acknowledged can be lost by stopping, cleanly or
not.

The access log (one line per request) is buffered while serving and written in batches by a
flusher thread (:mod:`api.wire.logbuffer`); the buffer is written out when serving stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import waitress

from api.errors import ApiError
from api.registry.app import MAX_BLOB, MAX_BODY, create_app
from api.registry.presence import INTERVAL_S
from api.registry.tlog_witness import WitnessCaller
from api.wire.accesslog import buffer_access_log
from api.wire.serving import answer_parse_errors_as_problems, stopped_by_signals
from ledger.store.ledger import Ledger

log = logging.getLogger("pht.server")


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
    heartbeat_interval: float = INTERVAL_S,
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
            heartbeat_interval=heartbeat_interval,
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

    restore_access_log = buffer_access_log()
    witnesses = WitnessCaller(ledger).start()
    try:
        with stopped_by_signals(stop):
            url = f"http://{_host_for_url(server.effective_host)}:{server.effective_port}"
            log.info("serving %s (%d threads, ledger size %d)", url, threads, ledger.size)
            if on_ready is not None:
                on_ready(url)
            server.run()  # returns after KeyboardInterrupt, once the workers have finished
    finally:
        stop.set()
        try:
            witnesses.stop()
            server.close()
        finally:
            restore_access_log()
            ledger.close()
            log.info("stopped; ledger closed at size %d", ledger.size)


def _host_for_url(host: object) -> str:
    text = str(host)
    return f"[{text}]" if ":" in text else text
