"""``pht profile``: where the registry is and which key signs, so commands need not repeat it.

The profile is a small JSON file, ``$PHT_PROFILE`` or ``~/.config/pht/profile.json``::

    {"registry": "http://127.0.0.1:8555", "key": "/home/ana/keys/ana.key", "genesis": "<hex>",
     "identity": "/home/ana/keys/ana.age"}

``--registry`` and ``--key`` on any command override it; ``identity`` is the age identity that
decrypts confidential results (``--identity`` overrides it; without either, ``NAME.age`` beside
the key ``NAME.key``, as ``pht keys new`` writes them). ``genesis``, when set, pins the ledger
the researcher trusts: results are read only from a registry whose entry 0 has that hash.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.client.analyst import Analyst
from api.client.ledgerview import Replay
from api.client.registry import Client
from cli.errors import CliError
from cli.replay import replay_for
from crypto import SigningKey
from crypto.age import AgeIdentity, load_identity
from ledger.canonical import parse_json
from ledger.store.durable import write_atomic

FIELDS = ("registry", "key", "genesis", "identity")


def profile_path() -> Path:
    explicit = os.environ.get("PHT_PROFILE")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "pht" / "profile.json"


def state_home() -> Path:
    """Where pht keeps what it must remember between commands (``$XDG_STATE_HOME/pht``): the
    auditor's checkpoints, saved replays, evidence of lies."""
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pht"


def read_profile(path: Path | None = None) -> dict[str, str]:
    path = path or profile_path()
    if not path.exists():
        return {}
    try:
        value = parse_json(path.read_bytes(), what=f"profile {path}")
    except OSError as exc:
        raise CliError(f"cannot read profile {path}: {exc.strerror}") from exc
    if not isinstance(value, dict) or not set(value) <= set(FIELDS):
        raise CliError(f"profile {path}: expected an object with {', '.join(FIELDS)}")
    return {k: str(v) for k, v in value.items()}


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="registry URL (default: from the profile)")
    parser.add_argument("--key", type=Path, help="your private key file (default: the profile's)")


@dataclass(frozen=True, slots=True)
class Connection:
    client: Client
    key: SigningKey
    genesis: str | None
    identity_file: Path | None = None

    def identity(self) -> AgeIdentity | None:
        return None if self.identity_file is None else load_identity(self.identity_file)

    def analyst(self) -> Analyst:
        """The Analyst over this connection, its verified replay saved between commands."""

        def replay(log_key: str, genesis: str) -> Replay:
            return replay_for(self.client, state_home(), log_key=log_key, genesis=genesis)

        return Analyst(
            self.client, self.key, genesis=self.genesis, identity=self.identity(), replay=replay
        )


def connect(args: argparse.Namespace, *, need_key: bool = True) -> Connection:
    profile = read_profile()
    registry = getattr(args, "registry", None) or profile.get("registry")
    if not registry:
        raise CliError("no registry given: pass --registry URL or run `pht profile set`")
    key_path = getattr(args, "key", None) or (Path(profile["key"]) if "key" in profile else None)
    if key_path is None:
        raise CliError("no key given: pass --key FILE or run `pht profile set`")
    key = SigningKey.load(key_path, passphrase=_passphrase())
    identity = getattr(args, "identity", None) or profile.get("identity")
    return Connection(
        Client(registry, key),
        key,
        profile.get("genesis"),
        Path(identity) if identity else beside_key(Path(key_path)),
    )


def beside_key(key_path: Path) -> Path | None:
    """``NAME.age`` beside the signing key ``NAME.key``, if there is one (``pht keys new``)."""
    candidate = key_path.with_name(key_path.name.removesuffix(".key") + ".age")
    return candidate if candidate != key_path and candidate.is_file() else None


def _passphrase() -> bytes | None:
    value = os.environ.get("PHT_KEY_PASSPHRASE")
    return value.encode() if value else None


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("profile", help="show or set the registry and key to use")
    sub = parser.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the profile")
    show.set_defaults(run=_show)
    put = sub.add_parser("set", help="set registry, key, genesis and/or identity")
    put.add_argument("--registry", help="the registry's URL, e.g. http://127.0.0.1:8555")
    put.add_argument("--key", type=Path, help="your private signing key, e.g. ana.key")
    put.add_argument(
        "--genesis", help="the ledger's genesis entry hash to pin (genesis_hash of `pht init`)"
    )
    put.add_argument(
        "--identity",
        type=Path,
        help="your age identity for encrypted results (default: NAME.age beside NAME.key)",
    )
    put.add_argument("--json", action="store_true", help="print the outcome as JSON")
    put.set_defaults(run=_set)


def _show(args: argparse.Namespace) -> int:
    path = profile_path()
    print(json.dumps({"path": str(path), **read_profile(path)}, indent=2))
    return 0


def _set(args: argparse.Namespace) -> int:
    path = profile_path()
    profile = read_profile(path)
    if args.registry:
        Client(args.registry).close()  # validates the URL
        profile["registry"] = args.registry
    if args.key:
        SigningKey.load(args.key, passphrase=_passphrase())  # refuses an unreadable/insecure key
        profile["key"] = str(args.key.resolve())
    if args.genesis:
        profile["genesis"] = args.genesis
    if args.identity:
        load_identity(args.identity)  # refuses an unreadable or insecure identity file
        profile["identity"] = str(args.identity.resolve())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps(profile, indent=2).encode() + b"\n")
    if args.json:
        print(json.dumps({"path": str(path), **profile}))
    else:
        print(f"profile written to {path}")
    return 0
