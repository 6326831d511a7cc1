"""Task ids as a user types them: the full 64 hex digits, or any unique prefix of at least 4
(as ``pht audit`` and the site logs print 12), resolved against the CLI's verified replay of the
ledger (:mod:`cli.replay`), never the registry's word."""

from __future__ import annotations

import re

from api.client.analyst import Analyst
from cli.errors import CliError
from ledger.bodies import EventId

PREFIX = re.compile(r"[0-9a-f]{4,64}")
MIN_PREFIX = 4


def resolve_task(analyst: Analyst, text: str) -> EventId:
    """The id of the one task whose id starts with ``text``; a :class:`CliError` naming the fix
    when ``text`` is not hex, too short, matches no task or more than one."""
    prefix = text.strip().lower()
    if not PREFIX.fullmatch(prefix):
        raise CliError(
            f"task id {text[:80]!r}: expected a task id or a unique prefix of it "
            f"(at least {MIN_PREFIX} hex digits)"
        )
    if len(prefix) == 64:
        return EventId(prefix)
    view = analyst.ledger_view()
    matches = sorted(task for task in view.tasks if task.startswith(prefix))
    if not matches:
        raise CliError(f"no task id starts with {prefix!r} (in {view.size} verified entries)")
    if len(matches) > 1:
        shown = ", ".join(m[: len(prefix) + 4] for m in matches[:5])
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise CliError(
            f"task id prefix {prefix!r} is ambiguous: it starts {shown}{more}; give more digits"
        )
    return EventId(matches[0])


def resolve_tasks(analyst: Analyst, text: str | None) -> tuple[EventId, ...]:
    """A comma-separated list of task ids or prefixes, each resolved."""
    return tuple(resolve_task(analyst, t) for t in (text or "").split(",") if t.strip())
