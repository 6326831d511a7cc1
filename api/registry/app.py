"""``create_app``: the one place where the registry's HTTP application is wired together.

Everything the app needs comes in as an argument (the open ledger, the clock, the limits); nothing
is read from the environment or held at module level, so a test builds exactly the app it needs.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import falcon

from api.registry.auth import Authenticator, member_key
from api.registry.openapi import document
from api.registry.presence import INTERVAL_S, Presence
from api.registry.readmodel import Heartbeats, Members, Sites, Tasks
from api.registry.resources import (
    Blob,
    CheckpointResource,
    ConsistencyProof,
    EventResource,
    Events,
    Health,
    InclusionProof,
    LongPollGate,
    OpenApi,
    Ready,
    TaskResource,
)
from api.registry.tiles import Tiles
from api.registry.webview import add_web_routes
from api.registry.witness import Cosignatures, CosignedCheckpoint
from api.wire import problems
from api.wire.accesslog import AccessLog
from api.wire.httpsig import DEFAULT_SKEW, DEFAULT_WINDOW, ReplayCache, RequestVerifier
from ledger.store.ledger import Ledger

MAX_BODY = 1024 * 1024
MAX_BLOB = 64 * 1024 * 1024
MAX_LIMIT = 1000
MAX_WAIT = 30


def create_app(
    ledger: Ledger,
    *,
    clock: Callable[[], float] = time.time,
    max_body: int = MAX_BODY,
    max_blob: int = MAX_BLOB,
    max_limit: int = MAX_LIMIT,
    max_wait: int = MAX_WAIT,
    long_poll_slots: int = 4,
    signature_window: int = DEFAULT_WINDOW,
    signature_skew: int = DEFAULT_SKEW,
    public_url: str | None = None,
    stop: threading.Event | None = None,
    heartbeat_interval: float = INTERVAL_S,
) -> falcon.App[falcon.Request, falcon.Response]:
    """The registry's Falcon app over an open ``ledger``.

    ``long_poll_slots`` bounds the long-polls waiting at once (keep it below the server's thread
    count); ``stop`` ends waiting long-polls at shutdown. Requests signed before the app was
    created are refused (see :mod:`api.wire.httpsig`), so a restart never reopens a replay window.

    What the registry appends is the ledger's to decide, not the app's: the ledger refuses
    malformed bodies (a task image no site can parse included), events whose time lies outside
    its ``time_window`` of its own clock (the one that stamps ``received``; ``clock`` here is the
    request-signature clock), and events naming blobs it does not hold; see
    :class:`ledger.store.ledger.Ledger`. The document at ``/openapi.json`` states that window.

    ``heartbeat_interval`` is the sites' heartbeat period the presence table judges them by
    (:mod:`api.registry.presence`); ``clock`` is its clock too.
    """
    verifier = RequestVerifier(
        member_key(ledger),
        clock=clock,
        window=signature_window,
        skew=signature_skew,
        not_before=math.ceil(clock()),
        replay=ReplayCache(shared=ledger.nonces),  # replicas of a database's ledger share it
    )
    middleware: list[Any] = [AccessLog(), Authenticator(ledger, verifier, public_url=public_url)]
    app = falcon.App(
        middleware=middleware,
        media_type=falcon.MEDIA_JSON,
    )
    app.req_options.strip_url_path_trailing_slash = False
    problems.register(app)

    spec = document(
        max_body=max_body,
        max_blob=max_blob,
        max_limit=max_limit,
        max_wait=max_wait,
        time_window=ledger.time_window,
    )
    gate = LongPollGate(long_poll_slots, stop if stop is not None else threading.Event())
    app.add_route("/healthz", Health(ledger))
    app.add_route("/readyz", Ready(ledger))
    app.add_route("/openapi.json", OpenApi(json.dumps(spec, separators=(",", ":")).encode()))
    app.add_route("/v1/checkpoint", CheckpointResource(ledger))
    app.add_route("/v1/checkpoint/cosigned", CosignedCheckpoint(ledger))
    app.add_route("/v1/cosignatures", Cosignatures(ledger))
    app.add_route(
        "/v1/events",
        Events(ledger, gate, body_limit=max_body, max_limit=max_limit, max_wait=max_wait),
    )
    app.add_route("/v1/events/{index}", EventResource(ledger))
    app.add_route("/v1/proofs/inclusion", InclusionProof(ledger))
    app.add_route("/v1/proofs/consistency", ConsistencyProof(ledger))
    app.add_route("/v1/blobs/{sha256}", Blob(ledger, max_blob=max_blob))
    app.add_route("/v1/tasks", Tasks(ledger))
    app.add_route("/v1/tasks/{event_id}", TaskResource(ledger))
    app.add_route("/v1/members", Members(ledger))
    presence = Presence(clock=clock, interval_s=heartbeat_interval)
    app.add_route("/v1/heartbeats", Heartbeats(ledger, presence))
    app.add_route("/v1/sites", Sites(ledger, presence))
    app.add_route("/v1/tile/{path:path}", Tiles(ledger))  # C2SP tlog-tiles, prefix /v1
    add_web_routes(app)  # the web view (issue 14): static files, public
    return app
