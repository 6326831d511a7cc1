"""``pht init``: create a registry's data directory and its genesis event.

::

    pht init --data DIR --origin NAME --admin-key KEY --members FILE [--name TEXT]
             [--store postgresql://...]

- Generates the registry's log key (the checkpoint signing key) into ``DIR/log.key``, mode 0600.
- Builds the genesis ``consortium`` event: name, origin, ``log_key`` (the C2SP verifier key of the
  log key under the origin) and the members of ``FILE``, signed by the admin's key. ``FILE`` is
  the members file (:mod:`cli.members_file`: name, role, public key, and optionally encryption
  key, organization, FileService and witness key). The admin signing the genesis must be listed
  with role ``admin``, or is added (first) as ``--admin-name``.
- The genesis is checked against the rules before anything is written, then the ledger is created.
- Refuses a directory that already holds a ledger or a log key.
- ``--store postgresql://...`` keeps the entries and blobs in that (empty) database instead of the
  data directory (DESIGN 10); the data directory still holds the log key and the checkpoint.

Prints, as JSON, what sites and auditors pin: the log verifier key and the genesis entry's hash.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.errors import CliError
from cli.members_file import read_members
from crypto import SigningKey
from ledger.bodies import Consortium
from ledger.checkpoint import key_fingerprint, verifier_key
from ledger.events import ZERO_HASH, Entry, SignedEvent, new_event, utc_now
from ledger.rules import apply
from ledger.state import State
from ledger.store.ledger import Ledger

LOG_KEY = "log.key"
MEMBERS_HELP = """\
members file: a JSON array, one object per member, e.g.
  [{"name": "ana", "role": "researcher", "public_key_file": "ana.pub",
    "encryption_key_file": "ana.age.pub", "organization": "umc-a"},
   {"name": "site-a", "role": "site", "public_key_file": "site-a.pub",
    "encryption_key_file": "site-a.age.pub"}]
  name, role          required; role is admin, researcher, site, auditor or reviewer
  public_key          base64 of the raw Ed25519 key (or PEM), or instead
  public_key_file     NAME.pub, a path relative to the members file
  encryption_key      age recipient (age1...) results for the member are encrypted for, or
  encryption_key_file NAME.age.pub (a recipient) or NAME.age (the recipient is derived)
  organization        e.g. umc-a (review counts approvals by distinct organizations)
  file_service        a site's FileService URL
  witness_key         a witness's cosignature/v1 verifier key (pht witness vkey)
The admin signing the genesis is added as --admin-name unless its key is listed."""


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "init",
        help="create a registry data directory and its genesis",
        description="Create a registry data directory: its log key and the genesis entry "
        "(signed by --admin-key) listing the consortium's members. Prints, as JSON, what sites "
        "and auditors pin: log_key and genesis_hash.",
        epilog=MEMBERS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, help="the new data directory")
    parser.add_argument("--origin", required=True, help="the log's origin, e.g. pht.example/main")
    parser.add_argument("--admin-key", required=True, type=Path, help="the admin's private key")
    parser.add_argument("--members", required=True, type=Path, help="members JSON file")
    parser.add_argument("--name", help="the consortium's name (default: the origin)")
    parser.add_argument("--admin-name", default="admin", help="the admin's name if not listed")
    add_store_option(parser)
    parser.set_defaults(run=run)


def add_store_option(parser: Any) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        help="keep the entries and blobs in this PostgreSQL database (postgresql://...) "
        "instead of the data directory",
    )


def run(args: argparse.Namespace) -> int:
    data: Path = args.data
    if (data / "entries.log").exists() or (data / LOG_KEY).exists():
        raise CliError(f"{data} already holds a ledger; refusing to overwrite it")
    admin = SigningKey.load(args.admin_key)
    members = read_members(args.members, admin, args.admin_name)
    log_key = SigningKey.generate()
    body = Consortium.from_dict(
        {
            "name": args.name or args.origin,
            "origin": args.origin,
            "log_key": verifier_key(args.origin, log_key.public),
            "members": members,
        },
        "consortium",
    )
    genesis = SignedEvent.sign(new_event(body, ledger=args.origin, author=admin.key_id), admin)
    # The rules judge the genesis in memory first, so a refused one leaves no directory behind.
    apply(State(), Entry(index=0, prev=ZERO_HASH, received=utc_now(), event=genesis))

    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_key.save(data / LOG_KEY)
    try:
        ledger = Ledger.create(data, genesis=genesis, log_key=log_key, store_url=args.store)
    except BaseException:
        (data / LOG_KEY).unlink(missing_ok=True)
        raise
    try:
        entry = ledger.entry(0)
        summary = {
            "data": str(data),
            "origin": args.origin,
            "log_key": ledger.log_key,
            "log_key_fingerprint": key_fingerprint(ledger.log_key),
            "genesis_hash": entry.hash,
            "genesis_event_id": genesis.event.id,
            "members": [m["name"] for m in members],
        }
    finally:
        ledger.close()
    print(json.dumps(summary, indent=2))
    return 0
