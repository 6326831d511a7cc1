"""``pht init``: create a registry's data directory and its genesis event.

::

    pht init --data DIR --origin NAME --admin-key KEY --members FILE [--name TEXT]
             [--store postgresql://...]

- Generates the registry's log key (the checkpoint signing key) into ``DIR/log.key``, mode 0600.
- Builds the genesis ``consortium`` event: name, origin, ``log_key`` (the C2SP verifier key of the
  log key under the origin) and the members of ``FILE``, signed by the admin's key. ``FILE`` is a
  JSON array of ``{"name", "role", "public_key"}`` where ``public_key`` is the base64 of the raw
  key or a PEM document; ``"public_key_file"`` (a path relative to ``FILE``) may replace it. The
  admin signing the genesis must be listed with role ``admin``, or is added as ``--admin-name``.
  A member may carry ``"org"``, its organization (algorithm review counts approvals by distinct
  organizations and refuses a reviewer of the submitter's own); a member without one is its own
  organization. A member may carry ``"witness_key"``, its C2SP cosignature/v1 verifier key
  (``pht witness vkey NAME KEYFILE`` prints it; a key of its own, never its signing key).
- The genesis is checked against the rules before anything is written, then the ledger is created.
- Refuses a directory that already holds a ledger or a log key.
- ``--store postgresql://...`` keeps the entries and blobs in that (empty) database instead of the
  data directory (DESIGN 10); the data directory still holds the log key and the checkpoint.

Prints, as JSON, what sites and auditors pin: the log verifier key and the genesis entry's hash.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.errors import CliError
from cli.member import orgless_reviewer
from crypto import PublicKey, SigningKey
from ledger.bodies import Consortium
from ledger.canonical import parse_json
from ledger.checkpoint import verifier_key
from ledger.events import ZERO_HASH, Entry, SignedEvent, new_event, utc_now
from ledger.rules import apply
from ledger.state import State
from ledger.store.ledger import Ledger

LOG_KEY = "log.key"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("init", help="create a registry data directory and its genesis")
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
            "genesis_hash": entry.hash,
            "genesis_event_id": genesis.event.id,
            "members": [m["name"] for m in members],
        }
    finally:
        ledger.close()
    print(json.dumps(summary, indent=2))
    return 0


def read_members(path: Path, admin: SigningKey, admin_name: str) -> list[dict[str, Any]]:
    """The members file as genesis member objects, with the admin among them."""
    try:
        value = parse_json(path.read_bytes(), what=f"members file {path}")
    except OSError as exc:
        raise CliError(f"cannot read members file {path}: {exc.strerror}") from exc
    if not isinstance(value, list):
        raise CliError(f"{path}: expected a JSON array of members, found {type(value).__name__}")
    members = [_member(item, n, path) for n, item in enumerate(value)]
    own = [m for m in members if m["public_key"] == admin.public.b64()]
    if own and own[0]["role"] != "admin":
        raise CliError(
            f"{path}: the admin key is listed as {own[0]['name']!r} with role {own[0]['role']}, "
            "expected role admin"
        )
    if not own:
        if any(m["name"] == admin_name for m in members):
            raise CliError(
                f"{path}: the admin key is not listed and the name {admin_name!r} is taken; "
                "list the admin or pass --admin-name"
            )
        members.insert(0, {"name": admin_name, "role": "admin", "public_key": admin.public.b64()})
    return members


def _member(item: object, n: int, path: Path) -> dict[str, Any]:
    where = f"{path}: member {n}"
    if not isinstance(item, dict):
        raise CliError(f"{where}: expected an object, found {type(item).__name__}")
    fields = set(item) - {"org", "witness_key"}
    if fields not in ({"name", "role", "public_key"}, {"name", "role", "public_key_file"}):
        raise CliError(
            f"{where}: expected fields name, role and public_key (or public_key_file), and "
            f"optionally org and witness_key, found {', '.join(sorted(item))}"
        )
    if "public_key_file" in item:
        key = PublicKey.load(path.parent / str(item["public_key_file"]))
    elif isinstance(item["public_key"], str):
        key = PublicKey.from_text(item["public_key"])
    else:
        raise CliError(f"{where}: public_key must be a string")
    member = {"name": item["name"], "role": item["role"], "public_key": key.b64()}
    if "org" in item:
        member["org"] = item["org"]
    elif item["role"] == "reviewer":
        print(f"{where}: warning: {orgless_reviewer(str(item['name']))}", file=sys.stderr)
    if "witness_key" in item:
        member["witness_key"] = item["witness_key"]
    return member
