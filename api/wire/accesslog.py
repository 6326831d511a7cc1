"""The access log both servers write: one line per request, with control characters escaped.

While a server runs, the lines are buffered and written in batches by a flusher thread
(:mod:`api.wire.logbuffer`); :func:`buffer_access_log` sets that up and undoes it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import falcon

from api.wire.logbuffer import BufferedHandler

ACCESS_LOG = "pht.access"
access_log = logging.getLogger(ACCESS_LOG)


class AccessLog:
    """One log line per request: client, method, target, status, duration, signer."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, succeeded: bool
    ) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        started = getattr(req.context, "started", None)
        elapsed = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        member = getattr(req.context, "member", None)
        target = printable(req.path + (f"?{req.query_string}" if req.query_string else ""))
        access_log.info(
            "%s %s %s %s %.1fms %s",
            req.remote_addr,
            req.method,
            target[:200],
            str(resp.status).split(" ", 1)[0],
            elapsed,
            member.name if member is not None else "-",
        )


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control characters escaped: a percent-encoded newline in a path must not
    start a forged line in the access log."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def buffer_access_log() -> Callable[[], None]:
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
