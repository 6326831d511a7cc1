"""Serving on waitress, as the registry and the site's FileService both do: requests waitress
refuses before they reach the app (a bad Content-Length, a header line without a colon, headers
or a body over its limits) are answered in problem+json with an access log line, like every other
error; and SIGTERM or SIGINT stop a server the same way in both programs.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from api.wire.accesslog import ACCESS_LOG, printable
from api.wire.problems import PROBLEM_JSON, problem_body, slug_for_status

log = logging.getLogger("pht.server")
access_log = logging.getLogger(ACCESS_LOG)


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


@contextmanager
def stopped_by_signals(
    stop: threading.Event, *, interrupt: bool = True, say: Callable[[int], None] | None = None
) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set ``stop`` (once; later signals are ignored) and, with
    ``interrupt``, raise KeyboardInterrupt in the main thread, which is how waitress's loop is
    ended. The previous handlers are restored on exit."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if say is not None:
            say(signum)
        else:
            log.info("signal %d: stopping", signum)
        stop.set()
        if interrupt:
            raise KeyboardInterrupt

    previous = {
        signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
