"""``pht member add|revoke``: an admin changes the consortium's membership.

    pht member add NAME --role ROLE --public-key KEY [--organization ORG]
                   [--encryption-key age1...|NAME.age.pub|NAME.age] [--file-service URL]
    pht member revoke NAME
    pht member rekey NAME (--encryption-key age1...|NAME.age.pub | --identity FILE.age
                          | --witness-key VKEY)
                     [--file-service URL]

``--witness-key`` (on ``add`` and ``rekey``) publishes the member's witness key: a C2SP
cosignature/v1 verifier key ``<name>+<hash>+<base64>`` of a key of its own, never its signing key
(``pht witness vkey`` prints it for a key file). The witness policy is ``pht witness policy``.

``rekey`` publishes or rotates a member's age encryption key (a member may rekey itself; an
admin may rekey anyone); tasks posted afterwards are encrypted for the new key.

Revoking looks the member's role and key up in the ledger (the rules require the revoke event to
name both, so an admin cannot revoke someone else by mistake).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli import member_list
from cli.errors import CliError
from cli.members_file import encryption_key_argument, orgless_reviewer
from cli.profile import add_connection_arguments, connect
from crypto import PublicKey
from crypto.age import load_identity
from ledger.bodies import Member, MemberAction, Role
from ledger.events import SignedEvent, new_event


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "member", help="add, revoke or rekey a consortium member (admins; rekey: also itself)"
    )
    sub = parser.add_subparsers(dest="member_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="add a member")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--public-key", required=True, help="base64 raw key or a PEM .pub file")
    add.add_argument(
        "--organization", help="the member's organization, e.g. umc-a (default: its own)"
    )
    add.add_argument(
        "--encryption-key",
        help="what results for the member are encrypted for: an age recipient (age1...), or a "
        "file NAME.age.pub, or the identity NAME.age (its recipient is derived)",
    )
    add.add_argument("--file-service", help="a site's FileService URL")
    add.add_argument("--witness-key", help="the member's cosignature/v1 verifier key")
    add.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_connection_arguments(add)
    add.set_defaults(run=_add)
    revoke = sub.add_parser("revoke", help="revoke a member: their key signs nothing after this")
    revoke.add_argument("name")
    revoke.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_connection_arguments(revoke)
    revoke.set_defaults(run=_revoke)
    rekey = sub.add_parser("rekey", help="publish or rotate a member's encryption key")
    rekey.add_argument("name")
    source = rekey.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--encryption-key", help="the new age recipient (age1...) or a file NAME.age.pub holding it"
    )
    source.add_argument("--identity", type=Path, help="an age identity file to take it from")
    source.add_argument("--witness-key", help="publish or rotate the member's witness key")
    rekey.add_argument("--file-service", help="a site's FileService URL")
    rekey.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_connection_arguments(rekey)
    rekey.set_defaults(run=_rekey)
    member_list.add_parser(sub)


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
    if args.json:
        report = {"action": body.action.value, "name": body.name, "role": body.role.value}
        print(json.dumps({**report, "index": appended.index}))
    else:
        print(f"{body.action.value} {body.name} ({body.role.value}): entry {appended.index}")
    return 0


def _add(args: argparse.Namespace) -> int:
    key = _public_key(args.public_key)
    if args.role == Role.REVIEWER.value and args.organization is None:
        print(f"pht: warning: {orgless_reviewer(args.name)} (give --organization)", file=sys.stderr)
    body = Member(
        action=MemberAction.ADD,
        name=args.name,
        role=Role(args.role),
        public_key=key.b64(),
        encryption_key=encryption_key_argument(args.encryption_key)
        if args.encryption_key
        else None,
        file_service=args.file_service,
        org=args.organization,
        witness_key=args.witness_key,
    )
    return _post(args, body)


def _find(args: argparse.Namespace) -> Member:
    """The member's current role and key, from the ledger."""
    conn = connect(args)
    found: Member | None = None
    start = 0
    while True:
        page = conn.client.entries(start, 1000)
        for entry in page.entries:
            body = entry.event.event.body
            if isinstance(body, Member) and body.name == args.name:
                if body.action is MemberAction.ADD:
                    found = body
                elif body.action is MemberAction.REVOKE:
                    found = None
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
    return found


def _revoke(args: argparse.Namespace) -> int:
    found = _find(args)
    body = Member(
        action=MemberAction.REVOKE, name=found.name, role=found.role, public_key=found.public_key
    )
    return _post(args, body)


def _rekey(args: argparse.Namespace) -> int:
    found = _find(args)
    encryption_key: str | None = None
    if args.identity is not None:
        encryption_key = load_identity(args.identity).recipient.to_string()
    elif args.encryption_key is not None:
        encryption_key = encryption_key_argument(args.encryption_key)
    body = Member(
        action=MemberAction.REKEY,
        name=found.name,
        role=found.role,
        public_key=found.public_key,
        encryption_key=encryption_key,
        file_service=args.file_service,
        witness_key=args.witness_key,
    )
    return _post(args, body)
