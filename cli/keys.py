"""``pht keys new NAME``: a new Ed25519 signing key pair, ``NAME.key`` (0600) and ``NAME.pub``
(PEM), and an age X25519 identity for confidential results, ``NAME.age`` (0600, the age-keygen
format, so the standard ``age -d -i NAME.age`` decrypts what sites encrypt for you) with its
recipient ``NAME.age.pub`` (one ``age1...`` line, what ``age -R`` and a members file's
``encryption_key_file`` take).

Set ``PHT_KEY_PASSPHRASE`` to encrypt the signing key. Prints, as JSON, the key id, the base64
public key (what a members file and ``pht member add`` take) and the age recipient.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cli.errors import CliError
from crypto import SigningKey, write_new_file
from crypto.age import AgeIdentity, save_identity


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "keys", help="create your key files: signing key pair and age encryption identity"
    )
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = sub.add_parser(
        "new",
        help="write NAME.key (0600), NAME.pub, NAME.age (0600) and NAME.age.pub",
        description="Write NAME.key (your private signing key, mode 0600; PHT_KEY_PASSPHRASE "
        "encrypts it), NAME.pub (its public key, for the members file or `pht member add`), "
        "NAME.age (your private age identity, mode 0600, which decrypts your results; pht "
        "finds it beside NAME.key) and NAME.age.pub (its recipient age1..., what results for "
        "you are encrypted to: the members file's encryption_key_file). Refuses to overwrite.",
    )
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
    identity = AgeIdentity.generate()
    save_identity(folder / f"{args.name}.age", identity)
    recipient = identity.recipient.to_string()
    write_new_file(folder / f"{args.name}.age.pub", f"{recipient}\n".encode(), mode=0o644)
    print(
        json.dumps(
            {
                "private_key": str(folder / f"{args.name}.key"),
                "public_key_file": str(folder / f"{args.name}.pub"),
                "public_key": key.public.b64(),
                "key_id": key.key_id,
                "age_identity": str(folder / f"{args.name}.age"),
                "encryption_key_file": str(folder / f"{args.name}.age.pub"),
                "encryption_key": recipient,
            },
            indent=2,
        )
    )
    return 0
