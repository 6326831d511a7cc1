"""``pht serve``: serve a registry's data directory over HTTP (waitress).

::

    pht serve --data DIR [--host 127.0.0.1] [--port 8555] [--threads 16]
              [--max-body BYTES] [--max-blob BYTES] [--public-url URL]
              [--store postgresql://...]

Logs one line per request; prints ``listening on <url>`` on stdout once bound (``--port 0``
picks a free port; the default 8555 keeps clear of the image registry many setups run on 5000).
SIGTERM or SIGINT stops it cleanly: every acknowledged append is durable.
"""

from __future__ import annotations

import argparse
import errno
from pathlib import Path
from typing import Any

from api.errors import ApiError
from api.registry.app import MAX_BLOB, MAX_BODY
from api.registry.presence import INTERVAL_S
from api.registry.server import serve
from cli.errors import CliError
from cli.init import LOG_KEY, add_store_option
from crypto import SigningKey
from ledger.store.ledger import Ledger

DEFAULT_PORT = 8555


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("serve", help="serve a registry over HTTP")
    parser.add_argument("--data", required=True, type=Path, help="the data directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument("--threads", type=int, default=16, help="worker threads (default 16)")
    parser.add_argument("--max-body", type=int, default=MAX_BODY, help="event body limit, bytes")
    parser.add_argument("--max-blob", type=int, default=MAX_BLOB, help="blob size limit, bytes")
    parser.add_argument(
        "--public-url",
        help="the URL clients use (scheme://host[:port]); pins the signed target URI's origin "
        "instead of trusting the Host header (set it behind a reverse proxy)",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=INTERVAL_S,
        help=f"the sites' heartbeat period, seconds (default {INTERVAL_S:g}); a site is offline "
        "after 3 missed",
    )
    add_store_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.threads < 3:
        raise CliError(f"--threads must be at least 3 (found {args.threads})")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be in 0..65535 (found {args.port})")
    if not 0.1 <= args.heartbeat_interval <= 3600:
        raise CliError(f"--heartbeat-interval must be in 0.1..3600 s ({args.heartbeat_interval})")
    if args.max_body < 1024 or args.max_blob < 1:
        raise CliError("--max-body must be at least 1024 and --max-blob at least 1")
    data: Path = args.data
    log_key = SigningKey.load(data / LOG_KEY)
    ledger = Ledger.open(data, log_key=log_key, store_url=args.store)
    try:
        serve(
            ledger,
            host=args.host,
            port=args.port,
            threads=args.threads,
            max_body=args.max_body,
            max_blob=args.max_blob,
            public_url=args.public_url,
            heartbeat_interval=args.heartbeat_interval,
            on_ready=lambda url: print(f"listening on {url}", flush=True),
        )
    except ApiError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            raise CliError(
                f"{exc}: another program listens there; pass --port N (--port 0 picks a free one)"
            ) from exc
        raise
    return 0
