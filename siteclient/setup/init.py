"""``siteclient init``: write a complete, validated site config (and the site's keys if asked).

Order, so that a refusal leaves nothing half-written:

1. Collect the values: flags; on a terminal, a prompt for each missing one; otherwise one error
   naming every missing flag.
2. Validate the config as :class:`~siteclient.config.SiteConfig` will read it (every problem at
   once), and refuse to overwrite ``DIR/config.json`` or the key files without ``--force``.
3. Reach the registry (:func:`~siteclient.setup.probe.probe_registry`: is anything there, and is
   it a PHT registry?).
4. The key: ``--key-file`` (an existing key, e.g. from ``pht keys new``) or ``--new-key``, which
   writes ``DIR/NAME.key`` (0600) and ``DIR/NAME.pub`` now, since the admin needs its public key.
5. The pins. Given (``--log-key``/``--genesis``, as the admin published what ``pht init``
   printed): the registry's checkpoint must verify under the log key, and, when the key is
   already a member's, the genesis must be the registry's. Fetched: the genesis entry (readable
   by members only) names the log key, the checkpoint must verify under it, and the operator
   confirms both, shown with fingerprints (``--yes`` accepts them unseen). A key that is not a
   member yet cannot fetch them: the config is not written, and the message says what to pass.
6. Write ``DIR/config.json``, load it back with :meth:`SiteConfig.load`, and print the public
   key and the members-file line to send to the admin.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.errors import ApiError, UnauthenticatedError
from crypto import SigningKey, write_new_file
from ledger.checkpoint import key_fingerprint
from ledger.store.durable import write_atomic
from siteclient.config import SiteConfig
from siteclient.errors import ConfigError
from siteclient.setup.probe import (
    FetchedPins,
    RegistryFacts,
    check_log_key,
    fetch_pins,
    probe_registry,
)

CONFIG_NAME = "config.json"
NO_SPARQL = "none"

EPILOG = """\
examples:
  # a key made before (pht keys new site-a), pins fetched and accepted:
  siteclient init --dir site-a --site site-a --registry http://127.0.0.1:8555 \\
      --allow '127\\.0\\.0\\.1:5000/pht-test/busybox:latest(@sha256:[0-9a-f]{64})?' \\
      --sparql-endpoint none --key-file site-a.key --yes
  # a new key, pins as the admin published them (pht init printed log_key, genesis_hash):
  siteclient init --dir site-b --site site-b --registry https://registry.example.org \\
      --allow 'myconsortium/[a-z0-9._-]+:[\\w.-]+(@sha256:[0-9a-f]{64})?' \\
      --sparql-endpoint http://sparql-b:7878/query --network site-b-net \\
      --new-key --log-key 'example.org/consortium+1a2b3c4d+AQ...' --genesis 0f3e...

Patterns (--allow) are regular expressions matched in full against the image's familiar form;
append (@sha256:[0-9a-f]{64})? so that tasks posted with --pin-digest match too.
--sparql-endpoint none: the site has no SPARQL store ($SPARQL_ENDPOINT is unset in containers).

exit codes: 0 written; 1 refused (the reason names the fix; nothing is overwritten); 2 usage"""


@dataclass(frozen=True, slots=True)
class _Ask:
    flag: str
    prompt: str
    attr: str


_REQUIRED = (
    _Ask("--dir", "directory for the site config and keys", "dir"),
    _Ask("--site", "site name (as the admin lists it)", "site"),
    _Ask("--registry", "registry URL (what `pht serve` prints)", "registry"),
    _Ask("--allow", "allowed image pattern (a regular expression)", "allow"),
    _Ask(
        "--sparql-endpoint", f"SPARQL endpoint URL ('{NO_SPARQL}' if the site has none)", "sparql"
    ),
)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "init",
        help="write a site config (and the site's keys) for this site",
        description="Write DIR/config.json, the site config `siteclient follow` reads, "
        "validated, with the registry's log key and genesis hash pinned.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", help="where to write config.json (and the keys with --new-key)")
    parser.add_argument("--site", help="the site's member name, e.g. site-a")
    parser.add_argument("--registry", help="the registry URL, e.g. http://127.0.0.1:8555")
    parser.add_argument(
        "--allow",
        action="append",
        metavar="PATTERN",
        help="an allowed image pattern (regular expression); repeat for more",
    )
    parser.add_argument(
        "--sparql-endpoint",
        dest="sparql",
        metavar="URL",
        help=f"the URL containers get as $SPARQL_ENDPOINT, or '{NO_SPARQL}'",
    )
    parser.add_argument(
        "--network", help="user-defined Docker network the containers join (the endpoint's)"
    )
    parser.add_argument("--log-key", help="the registry's log key, as the admin published it")
    parser.add_argument("--genesis", help="the genesis hash (64 hex), as the admin published it")
    parser.add_argument(
        "--yes", action="store_true", help="accept the log key and genesis the registry serves"
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key-file", help="the site's existing private key (pht keys new)")
    keys.add_argument(
        "--new-key", action="store_true", help="write a new key pair DIR/SITE.key and DIR/SITE.pub"
    )
    parser.add_argument("--organization", help="the site's organization, for the members line")
    parser.add_argument("--timeout-s", type=int, help="wall-clock limit per task (default 600)")
    parser.add_argument("--memory-mb", type=int, help="memory limit per task (default 512)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    _complete(args, interactive, input)
    folder = Path(args.dir).absolute()
    config_path = folder / CONFIG_NAME
    data = _config(args, folder)
    SiteConfig.from_dict(data, base_dir=folder)  # every problem at once, before anything
    new_key_files = (folder / f"{args.site}.key", folder / f"{args.site}.pub")
    targets = [config_path, *(new_key_files if args.new_key else ())]
    existing = [str(path) for path in targets if path.exists()]
    if existing and not args.force:
        raise ConfigError(f"{', '.join(existing)} already exist(s); pass --force to overwrite")

    facts = probe_registry(data["registry"])
    if args.new_key:
        key = SigningKey.generate()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in new_key_files:
            path.unlink(missing_ok=True)  # only here with --force
        key.save(new_key_files[0])
        write_new_file(new_key_files[1], key.public.pem(), mode=0o644)
        print(f"wrote {new_key_files[0]} (0600) and {new_key_files[1]}")
    else:
        key = SigningKey.load(folder / data["key_file"])
    _print_member_line(args, key)
    data["log_key"], data["genesis"] = _pins(args, facts, key, interactive)

    SiteConfig.from_dict(data, base_dir=folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(config_path, (json.dumps(data, indent=2) + "\n").encode())
    SiteConfig.load(config_path)  # what follow will read, including the key file's mode
    print(f"wrote the site config {config_path}")
    print(f"next: siteclient check-config --config {config_path}")
    print(f"then: siteclient follow --config {config_path}")
    return 0


def _complete(args: argparse.Namespace, interactive: bool, ask: Callable[[str], str]) -> None:
    """Fill missing values from prompts on a terminal; else raise one error naming them all."""
    missing = [item for item in _REQUIRED if not getattr(args, item.attr)]
    need_key = not args.key_file and not args.new_key
    if not interactive:
        flags = [item.flag for item in missing] + (["--key-file or --new-key"] if need_key else [])
        if flags:
            raise ConfigError(
                f"missing {', '.join(flags)} (see `siteclient init --help` for an example)"
            )
        return
    for item in missing:
        answer = ""
        while not answer:
            answer = ask(f"{item.prompt}: ").strip()
        setattr(args, item.attr, [answer] if item.attr == "allow" else answer)
    if need_key:
        answer = ask("private key file (empty: make a new key pair): ").strip()
        args.key_file, args.new_key = (answer, False) if answer else (None, True)


def _config(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    key_file = f"{args.site}.key" if args.new_key else str(Path(args.key_file).absolute())
    sparql = None if args.sparql.strip().lower() == NO_SPARQL else args.sparql
    data: dict[str, Any] = {
        "site": args.site,
        "key_file": key_file,
        "registry": args.registry,
        "log_key": args.log_key,
        "genesis": args.genesis,
        "sparql_endpoint": sparql,
        "allowed_images": list(args.allow),
        "network": args.network,
        "state_dir": "state",
        "work_dir": "work",
    }
    limits = {
        name: value
        for name, value in (("timeout_s", args.timeout_s), ("memory_mb", args.memory_mb))
        if value is not None
    }
    if limits:
        data["limits"] = limits
    if (args.log_key is None) != (args.genesis is None):
        raise ConfigError(
            "give both --log-key and --genesis (as `pht init` printed them), or neither"
        )
    return data


def _pins(
    args: argparse.Namespace, facts: RegistryFacts, key: SigningKey, interactive: bool
) -> tuple[str, str]:
    if args.log_key is not None:
        check_log_key(facts, args.log_key)
        try:
            fetched = fetch_pins(facts, key)
        except UnauthenticatedError as exc:
            if exc.slug != "unknown-key":
                raise
            print(
                "note: the registry serves its genesis only to members; `siteclient "
                "check-config` checks the genesis pin once the admin has added this site"
            )
            return args.log_key, args.genesis
        if fetched.genesis != args.genesis or fetched.log_key != args.log_key:
            raise ConfigError(
                f"the registry's genesis is {fetched.genesis} under log key {fetched.log_key}; "
                "you gave other values: ask the admin which registry is the consortium's"
            )
        return args.log_key, args.genesis
    try:
        fetched = fetch_pins(facts, key)
    except UnauthenticatedError as exc:
        if exc.slug != "unknown-key":
            raise ConfigError(f"cannot read the registry's genesis: {exc}") from exc
        raise ConfigError(
            f"the registry serves its log key and genesis only to members, and key "
            f"{key.key_id[:12]}… is not one yet ({exc}); the config was not written. Send the "
            "admin the members-file line above, then run this again with --key-file; or pass "
            "--log-key and --genesis as the admin published them (`pht init` printed them)"
        ) from exc
    except ApiError as exc:
        raise ConfigError(f"cannot read the registry's genesis: {exc}") from exc
    _show(fetched, facts)
    if args.yes:
        return fetched.log_key, fetched.genesis
    if not interactive:
        raise ConfigError(
            "confirm the log key and genesis above: pass --yes to accept them, or --log-key "
            "and --genesis as the admin published them"
        )
    if input("Do both match what the admin published? [y/N] ").strip().lower() not in ("y", "yes"):
        raise ConfigError("not confirmed; nothing written")
    return fetched.log_key, fetched.genesis


def _show(fetched: FetchedPins, facts: RegistryFacts) -> None:
    print(
        f"registry  {facts.url}: consortium {fetched.name!r}, ledger {fetched.origin!r}, "
        f"{facts.size} entries"
    )
    print(f"log key   {fetched.log_key}")
    print(f"          fingerprint {key_fingerprint(fetched.log_key)}")
    print(f"genesis   {fetched.genesis}")
    print(
        "Compare both with what the admin published (`pht init` printed log_key, its "
        "log_key_fingerprint and genesis_hash; the web view shows the same fingerprint)."
    )


def _print_member_line(args: argparse.Namespace, key: SigningKey) -> None:
    member: dict[str, str] = {"name": args.site, "role": "site", "public_key": key.public.b64()}
    if args.organization:
        member["organization"] = args.organization
    print(f"public key {key.public.b64()} (key id {key.key_id[:16]})")
    print("members-file line to send to the admin (members.json, or `pht member add`):")
    print(json.dumps(member))
