"""``pht member list``: every member, current and revoked, from your verified replay.

    pht member list [--json]

Read from the CLI's verified replay of the ledger (:mod:`cli.replay`), never the registry's read
model; the listing is :func:`ledger.listing.list_members`, the same as ``GET /v1/members``
answers. ``index`` is the latest entry about the member (its addition, rekey or revocation).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.profile import add_connection_arguments, connect
from ledger.listing import MemberLine, list_members


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("list", help="list members (current and revoked), verified")
    parser.add_argument("--json", action="store_true", help="JSON only, on stdout")
    add_connection_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    view = connect(args).analyst().ledger_view()
    members = list_members(view.members.values())
    if args.json:
        print(json.dumps({"size": view.size, "members": [m.to_dict() for m in members]}, indent=2))
        return 0
    print(table(members))
    print(f"{len(members)} members, verified up to entry {view.size}", file=sys.stderr)
    return 0


def _status(member: MemberLine) -> str:
    return f"revoked at entry {member.revoked}" if member.revoked is not None else "active"


def table(members: tuple[MemberLine, ...]) -> str:
    head = ["NAME", "ROLE", "ORGANIZATION", "KEY ID", "ENCRYPTION KEY", "STATUS"]
    rows = [
        [
            m.name,
            m.role,
            m.organization or "-",
            m.key_id[:16],
            "yes" if m.encryption_key else "none",
            _status(m),
        ]
        for m in members
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in [head, *rows]
    )
