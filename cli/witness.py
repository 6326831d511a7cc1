"""``pht witness``: witness keys and the consortium's witness policy (DESIGN 12).

    pht witness vkey NAME KEY_FILE     print the cosignature/v1 verifier key of a key file
    pht witness policy FILE            (admin) set the witness policy: C2SP tlog-policy text

A witness key is a key of its own (``pht keys new``), never the member's signing key; publish
its verifier key with ``pht member add|rekey --witness-key``. The policy names each witness by
its member name with that key (``witness site-a site-a+1a2b3c4d+BA...``), groups them and sets
the quorum (``group sites 2 site-a site-b site-c`` then ``quorum sites``); its ``log`` line is
the registry's log key. Sites, the FileService, ``pht audit`` and the Analyst then act only on
checkpoints cosigned by that quorum.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.errors import CliError
from cli.profile import add_connection_arguments, connect
from crypto import SigningKey
from ledger.bodies import WitnessPolicySet
from ledger.cosignature import witness_key
from ledger.errors import LedgerError
from ledger.events import SignedEvent, new_event


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("witness", help="witness keys and the witness policy")
    sub = parser.add_subparsers(dest="witness_command", metavar="ACTION", required=True)
    vkey = sub.add_parser("vkey", help="print the witness verifier key of a key file")
    vkey.add_argument("name", help="the witness's member name (the key name)")
    vkey.add_argument("key_file", type=Path)
    vkey.set_defaults(run=_vkey)
    policy = sub.add_parser("policy", help="set the consortium's witness policy (admins)")
    policy.add_argument("file", type=Path, help="C2SP tlog-policy text")
    policy.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_connection_arguments(policy)
    policy.set_defaults(run=_policy)


def _vkey(args: argparse.Namespace) -> int:
    print(witness_key(args.name, SigningKey.load(args.key_file).public))
    return 0


def _policy(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from exc
    try:
        body = WitnessPolicySet(policy=text)
    except LedgerError as exc:
        raise CliError(str(exc)) from exc
    conn = connect(args)
    origin = conn.client.entry(0).event.event.ledger
    event = new_event(body, ledger=origin, author=conn.key.key_id)
    appended = conn.client.post_event(SignedEvent.sign(event, conn.key))
    if args.json:
        print(json.dumps({"witness_policy": appended.event_id, "index": appended.index}))
    else:
        print(f"witness policy set: entry {appended.index}")
    return 0
