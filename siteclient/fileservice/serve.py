"""``siteclient serve-files``: the FileService on waitress, beside a follower that keeps its view
of the ledger current.

Start: load the key, open the inbox (removing uploads a crash left half-written), lock the
follower's own state directory ``<state_dir>/fileservice`` (so it never races ``siteclient
follow``), verify the ledger once (a registry that cannot be reached or trusted stops the start),
finish transfers a crash left pending, bind, and only then report ``listening on <url>``. Then
the follower syncs in a background thread (long-polls of ``poll_wait_s``) while waitress serves.

Stop: SIGTERM or SIGINT stops accepting, lets requests in progress finish, ends the follower and
releases its lock.

Exposure: waitress buffers each request body before the application authenticates it, so its body
limit is ``max_file_bytes`` and its connections are capped (:data:`CONNECTION_LIMIT`); idle or
slow connections are closed after :data:`CHANNEL_TIMEOUT_S` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import waitress

from api.client.registry import Client
from api.wire.serving import answer_parse_errors_as_problems, stopped_by_signals
from crypto import SigningKey
from siteclient.config import SiteConfig
from siteclient.errors import ConfigError, SiteClientError
from siteclient.fileservice.app import FileLimits, create_file_app
from siteclient.fileservice.inbox import Inbox
from siteclient.fileservice.transfers import TransferRecorder
from siteclient.fileservice.view import ViewBoard, ViewRefresher
from siteclient.follow.follower import Follower
from siteclient.follow.state import TrustStore

log = logging.getLogger("siteclient.fileservice")

THREADS = 8
CONNECTION_LIMIT = 64
CHANNEL_TIMEOUT_S = 60
WILDCARDS = frozenset({"0.0.0.0", "::", "0:0:0:0:0:0:0:0"})  # noqa: S104 -- recognized, not bound


def serve_files(config: SiteConfig, *, on_ready: Callable[[str], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; ``on_ready`` receives the URL bound (port 0 picks one)."""
    fs = config.file_service
    if fs is None:
        raise ConfigError(
            'serve-files needs a "file_service" section in the config (host, port, inbox_dir, ...)'
        )
    if fs.public_url is None and fs.host in WILDCARDS:
        raise ConfigError(
            f"file_service.host {fs.host!r} listens on every interface: set "
            "file_service.public_url to the URL members send to (the one published in the ledger)"
        )
    key = SigningKey.load(config.key_file)
    # The lock comes first: a second instance must not touch the running one's inbox.
    store = TrustStore(config.state_dir / "fileservice", exclusive=True)
    client = Client(config.registry, key, timeout=10.0)
    try:
        inbox = Inbox(fs.inbox_dir)
        removed = inbox.clean_tmp()
        if removed:
            log.warning("removed %d half-written upload(s) left by an earlier run", removed)
        follower = Follower(client, store, log_key=config.log_key, genesis=config.genesis)
        board = ViewBoard()
        refresher = ViewRefresher(follower, board, site=config.site, wait=config.poll_wait_s)
        view = refresher.sync_once()
        me = view.senders.get(key.key_id)
        if me is not None and me.name != config.site:
            raise ConfigError(
                f"key_file {config.key_file} is the key of {me.name!r}, not of {config.site!r}"
            )
        if not view.receiver_active or me is None:
            log.warning("%r is not a current site member: uploads will be refused", config.site)
        recorder = TransferRecorder(
            site=config.site, key=key, inbox=inbox, client=client, clock=time.time
        )
        left = recorder.finish_pending()
        if left:
            log.warning("%d received file(s) still wait for their transfer event", left)
        sock = _bind(fs.host, fs.port)
        bound = f"http://{_host_for_url(fs.host)}:{sock.getsockname()[1]}"
        try:
            app = create_file_app(
                site=config.site,
                key=key,
                views=board,
                inbox=inbox,
                client=client,
                public_url=fs.public_url or bound,
                clock=time.time,
                limits=FileLimits(
                    max_file_bytes=fs.max_file_bytes, min_free_bytes=fs.min_free_bytes
                ),
            )
            server = waitress.create_server(
                app,
                sockets=[sock],
                threads=THREADS,
                ident="pht-fileservice",
                max_request_body_size=fs.max_file_bytes + 1,  # waitress refuses >= this
                connection_limit=CONNECTION_LIMIT,
                channel_timeout=CHANNEL_TIMEOUT_S,
                asyncore_use_poll=True,
            )
            answer_parse_errors_as_problems(server)
        except BaseException:
            sock.close()
            raise
        log.info(
            "FileService of %r on %s (members sign for %s), ledger from %s",
            config.site,
            bound,
            fs.public_url or bound,
            config.registry,
        )
        return _run(
            server, refresher, bound=bound, join_s=config.poll_wait_s + 15, on_ready=on_ready
        )
    finally:
        client.close()
        store.close()


def _run(
    server: Any,  # waitress's server (untyped)
    refresher: ViewRefresher,
    *,
    bound: str,
    join_s: float,
    on_ready: Callable[[str], None] | None,
) -> int:
    stop = threading.Event()

    thread = refresher.start(stop)
    try:
        with stopped_by_signals(stop), contextlib.suppress(KeyboardInterrupt):
            if on_ready is not None:
                on_ready(bound)
            server.run()  # returns once the workers have finished after the signal
    finally:
        stop.set()
        server.close()
        thread.join(join_s)
        log.info("FileService stopped")
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SiteClientError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
