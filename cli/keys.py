"""``pht keys new NAME``: a new Ed25519 key pair, ``NAME.key`` (0600) and ``NAME.pub`` (PEM).

Set ``PHT_KEY_PASSPHRASE`` to encrypt the private key. Prints the key id and the base64 public key
(the form a members file and ``pht member add`` take).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cli.errors import CliError
from crypto import SigningKey, write_new_file


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("keys", help="create signing keys")
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="write NAME.key (0600) and NAME.pub")
    new.add_argument("name", help="file name stem, e.g. your member name")
    new.add_argument("--dir", type=Path, default=Path("."), help="where to write (default: .)")
    new.set_defaults(run=_new)


def _new(args: argparse.Namespace) -> int:
    if not args.name or "/" in args.name or args.name.startswith("."):
        raise CliError(f"key name {args.name!r} must be a plain file name")
    folder: Path = args.dir
    folder.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    passphrase = os.environ.get("PHT_KEY_PASSPHRASE")
    key.save(folder / f"{args.name}.key", passphrase.encode() if passphrase else None)
    write_new_file(folder / f"{args.name}.pub", key.public.pem(), mode=0o644)
    print(
        json.dumps(
            {
                "private_key": str(folder / f"{args.name}.key"),
                "public_key_file": str(folder / f"{args.name}.pub"),
                "public_key": key.public.b64(),
                "key_id": key.key_id,
            },
            indent=2,
        )
    )
    return 0
