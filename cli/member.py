"""``pht member add|revoke``: an admin changes the consortium's membership.

    pht member add NAME --role ROLE --public-key KEY     (KEY: base64, or a PEM .pub file)
    pht member revoke NAME

Revoking looks the member's role and key up in the ledger (the rules require the revoke event to
name both, so an admin cannot revoke someone else by mistake).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.errors import CliError
from cli.profile import add_connection_arguments, connect
from crypto import PublicKey
from ledger.bodies import Member, MemberAction, Role
from ledger.events import SignedEvent, new_event


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("member", help="add or revoke a consortium member (admins)")
    sub = parser.add_subparsers(dest="member_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a member")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--public-key", required=True, help="base64 raw key or a PEM .pub file")
    add_connection_arguments(add)
    add.set_defaults(run=_add)
    revoke = sub.add_parser("revoke", help="revoke a member: their key signs nothing after this")
    revoke.add_argument("name")
    add_connection_arguments(revoke)
    revoke.set_defaults(run=_revoke)


def _public_key(text: str) -> PublicKey:
    path = Path(text)
    if path.exists():
        return PublicKey.load(path)
    return PublicKey.from_text(text)


def _post(args: argparse.Namespace, body: Member) -> int:
    conn = connect(args)
    origin = conn.client.entry(0).event.event.ledger
    event = new_event(body, ledger=origin, author=conn.key.key_id)
    appended = conn.client.post_event(SignedEvent.sign(event, conn.key))
    print(f"{body.action.value} {body.name} ({body.role.value}): entry {appended.index}")
    return 0


def _add(args: argparse.Namespace) -> int:
    key = _public_key(args.public_key)
    body = Member(
        action=MemberAction.ADD, name=args.name, role=Role(args.role), public_key=key.b64()
    )
    return _post(args, body)


def _revoke(args: argparse.Namespace) -> int:
    conn = connect(args)
    found: Member | None = None
    start = 0
    while True:
        page = conn.client.entries(start, 1000)
        for entry in page.entries:
            body = entry.event.event.body
            if isinstance(body, Member) and body.name == args.name:
                found = body if body.action is MemberAction.ADD else None
            specs = getattr(body, "members", ())
            for spec in specs:
                if spec.name == args.name:
                    found = Member(
                        action=MemberAction.ADD,
                        name=spec.name,
                        role=spec.role,
                        public_key=spec.public_key,
                    )
        if page.next >= page.size or not page.entries:
            break
        start = page.next
    if found is None:
        raise CliError(f"{args.name!r} is not an active member of this ledger")
    body = Member(
        action=MemberAction.REVOKE, name=found.name, role=found.role, public_key=found.public_key
    )
    return _post(args, body)
