"""``pht task list``: tasks, newest first, from the researcher's own verified replay.

    pht task list [--all] [--state S] [--site S] [--image REGEX] [--label L] [--since ISO]
                  [--limit N] [--json]

Read from the CLI's verified replay of the ledger (:mod:`cli.replay`: every entry checked by the
trust core against the registry's signed checkpoint, kept between commands so each run verifies
only what is new), never from the registry's read model. The states, indexes and cancellations
come from the replay itself; the image, label, time and reasons from the entries it verified,
fetched again and checked against the leaf hashes the replay holds
(:func:`api.client.ledgerview.verified_entry`). The listing itself is the registry's
(:func:`ledger.listing.list_tasks`), so ``GET /v1/tasks`` and this command agree.

By default only your tasks (the profile key's member); ``--all`` lists everyone's. ``--since``
takes an ISO date or time (UTC unless it names a zone) and compares it with the time the registry
received the task. ``--json`` prints ``{"size", "tasks", "next"}`` as ``GET /v1/tasks`` answers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from typing import Any

from api.client.ledgerview import verified_entry
from cli.errors import CliError
from cli.profile import add_connection_arguments, connect
from ledger.errors import FormatError
from ledger.events import Entry, format_time
from ledger.listing import DEFAULT_LIMIT, MAX_LIMIT, STATES, TaskLine, TaskQuery, list_tasks

EXAMPLES = """examples:
  pht task list                          your 50 newest tasks
  pht task list --all --state failed     everyone's tasks that failed at some site
  pht task list --site umc --since 2026-11-25 --json
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "list",
        help="list tasks (yours, or --all), newest first, from your verified replay",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--all", action="store_true", help="everyone's tasks, not only yours")
    parser.add_argument("--state", choices=sorted(STATES), help="a site in this state")
    parser.add_argument("--site", help="tasks naming this site")
    parser.add_argument("--image", help="a regular expression searched in the image reference")
    parser.add_argument("--label", help="tasks with exactly this label")
    parser.add_argument("--since", help="received at or after this ISO date/time (UTC default)")
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"at most N tasks (default {DEFAULT_LIMIT})",
    )
    parser.add_argument("--json", action="store_true", help="JSON only, on stdout")
    add_connection_arguments(parser)
    parser.set_defaults(run=run)


def since_time(text: str) -> str:
    """``text`` (an ISO date or date and time) as the ledger writes times (UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliError(
            f"--since: expected an ISO date or time like 2026-11-25 or 2026-11-25T17:00, "
            f"found {text!r}"
        ) from exc
    return format_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= MAX_LIMIT:
        raise CliError(f"--limit must be in 1..{MAX_LIMIT} (found {args.limit})")
    try:
        image = re.compile(args.image) if args.image else None
    except re.error as exc:
        raise CliError(f"--image: not a regular expression: {exc}") from exc
    conn = connect(args)
    view = conn.analyst().ledger_view()
    author = None
    if not args.all:
        me = view.member_by_key(conn.key.key_id)
        if me is None:
            raise CliError("your key is not a member's key in this ledger; pass --all")
        author = me.name
    try:
        query = TaskQuery(
            author=author,
            state=args.state,
            site=args.site,
            label=args.label,
            since=since_time(args.since) if args.since else None,
            limit=args.limit,
            image=image,
        )
    except FormatError as exc:
        raise CliError(str(exc)) from exc
    fetched: dict[int, Entry] = {}

    def entry_at(index: int) -> Entry:
        if index not in fetched:
            fetched[index] = verified_entry(conn.client, view, index)
        return fetched[index]

    newest_first = sorted(view.tasks.values(), key=lambda t: t.index, reverse=True)
    page = list_tasks(newest_first, entry_at, query, size=view.size)
    if args.json:
        print(json.dumps(page.to_dict(), indent=2))
        return 0
    print(table(page.tasks, authors=args.all))
    more = f"; more with --limit {min(MAX_LIMIT, args.limit * 2)}" if page.next is not None else ""
    whose = "all" if args.all else f"{author}'s"
    print(
        f"{len(page.tasks)} of {whose} tasks, verified up to entry {view.size}{more}",
        file=sys.stderr,
    )
    return 0


def _states(line: TaskLine) -> str:
    parts = []
    for site, progress in line.sites.items():
        reason = f" ({progress.reason})" if progress.reason else ""
        parts.append(f"{site} {progress.state}{reason}")
    if line.cancelled is not None:
        reason = f": {line.cancelled.reason}" if line.cancelled.reason else ""
        parts.append(f"CANCELLED at entry {line.cancelled.index}{reason}")
    return ", ".join(parts)


def table(lines: tuple[TaskLine, ...], *, authors: bool) -> str:
    """One row per task: short id, time received, (author), image, label, state per site."""
    head = ["TASK", "CREATED", *(["AUTHOR"] if authors else []), "IMAGE", "LABEL", "STATES"]
    rows = [
        [
            line.task[:12],
            line.created[:19].replace("T", " "),
            *([line.author] if authors else []),
            line.image,
            line.label or "-",
            _states(line),
        ]
        for line in lines
    ]
    if not rows:
        return "no tasks"
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head) - 1)]
    out = []
    for row in [head, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.append("  ".join([*cells, row[-1]]))
    return "\n".join(out)
