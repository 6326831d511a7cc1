"""Waiting for a task: poll the registry's task view, long-polling the ledger in between, and
ride out a registry that cannot be reached for a while (a restart) until the deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from api.client.answers import TaskProgress, TaskView
from api.client.registry import Client
from api.errors import AnalysisError, TransportError

log = logging.getLogger("api.client.analyst")

Progress = Callable[[TaskProgress], None]
Unreachable = Callable[[TransportError | None], None]
RETRY_UNREACHABLE_S = 2.0  # how often to try again while the registry is unreachable


def wait_for(
    client: Client,
    task_id: str,
    *,
    timeout: float,
    clock: Callable[[], float],
    progress: Progress | None = None,
    unreachable: Unreachable | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> TaskView:
    """The task view once every site has a result; :class:`AnalysisError` when ``timeout``
    seconds (on ``clock``) pass first, or the last :class:`TransportError` when the registry was
    unreachable then."""
    deadline = clock() + timeout
    last: dict[str, str] | None = None
    down = False
    cursor: int | None = None
    while True:
        try:
            if cursor is None:
                cursor = client.health()
            view = client.task(task_id)
            if down:
                down = False
                _report_unreachable(unreachable, None)
            states = {site: s.state for site, s in view.sites.items()}
            if progress is not None and states != last:
                progress(TaskProgress.of(view))
                last = states
            if all(s.finished for s in view.sites.values()):
                return view
            remaining = deadline - clock()
            if remaining <= 0:
                raise AnalysisError(
                    f"task {task_id[:12]} unfinished after {timeout:.0f} s: {states}"
                )
            page = client.entries(cursor, 1000, wait=max(1, min(25, int(remaining))))
            cursor = page.next
        except TransportError as exc:
            if clock() >= deadline:
                raise
            if not down:
                down = True
                _report_unreachable(unreachable, exc)
            sleep(min(RETRY_UNREACHABLE_S, max(0.0, deadline - clock())))


def _report_unreachable(unreachable: Unreachable | None, error: TransportError | None) -> None:
    if unreachable is not None:
        unreachable(error)
    elif error is not None:
        log.warning("registry unreachable (%s); still retrying", error)
    else:
        log.warning("registry reachable again")
