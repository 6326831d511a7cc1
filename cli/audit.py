"""``pht audit``: replay and check a whole ledger, then report who ran what where.

    pht audit --registry URL [--key FILE]   or   pht audit --data DIR
              [--json] [--workers N] [--genesis HASH] [--state DIR]

Checks every hash, the chain, every signature, every rule, the Merkle root against the registry's
signed checkpoint, and that history is consistent with the newest checkpoint this auditor saw on
an earlier run (kept in ``--state``, default ``~/.local/state/pht/audit``), all through the trust
core (:mod:`ledger.trust`). Exits 0 when all holds; 2 naming the first bad entry and what is
wrong; 3 when the registry served something other than the history it signed (a rollback, a
fork, a rewritten history, another genesis), keeping both checkpoints as evidence in the state
directory, as a site does. Progress goes to stderr.

With ``--data`` it also hashes every blob the ledger names for the registry (a task's config_blob,
a result's outputs and log; not outputs delivered to a site's FileService, which the registry
never holds) and exits 2 naming, on stderr, each missing or damaged one by entry, field and sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from api.client.registry import Client
from cli.errors import CliError
from cli.profile import connect
from ledger.audit import AuditReport, audit
from ledger.checkpoint import unverified_size
from ledger.errors import UntrustedLogError, VerificationError, WithheldEntriesError
from ledger.store.blobcheck import check_blobs
from ledger.store.blobs import BlobStore
from ledger.store.durable import write_atomic
from ledger.store.readlog import read_log

EXIT_FAILED = 2
EXIT_UNTRUSTED = 3
PAGE = 1000


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("audit", help="verify a whole ledger and report on it")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a registry's data directory")
    source.add_argument("--registry", help="a registry URL (needs a member key: --key)")
    parser.add_argument("--key", type=Path, help="your private key file (default: the profile's)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--genesis", help="pin the genesis entry hash")
    parser.add_argument("--state", type=Path, help="where this auditor keeps checkpoints it saw")
    parser.set_defaults(run=run)


class Bar:
    """A progress bar on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, total: int, what: str) -> None:
        self.total = max(1, total)
        self.what = what
        self.tty = sys.stderr.isatty()
        self.shown = -1
        self.start = time.monotonic()

    def __call__(self, done: int) -> None:
        percent = min(100, done * 100 // self.total)
        if percent == self.shown or (not self.tty and percent // 10 == self.shown // 10):
            return
        self.shown = percent
        rate = done / max(1e-9, time.monotonic() - self.start)
        bar = "#" * (percent // 4)
        line = f"{self.what} [{bar:<25}] {percent:3d}% {done}/{self.total} ({rate:,.0f}/s)"
        print(("\r" if self.tty else "") + line, end="" if self.tty else "\n", file=sys.stderr)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _pages(client: Client, size: int, bar: Bar) -> Iterator[list[bytes]]:
    """The ledger's records up to ``size``, page by page (verified while later pages load)."""
    fetched = 0
    while fetched < size:
        page, _ = client.entry_records(fetched, min(PAGE, size - fetched))
        if not page:
            return  # fewer than the checkpoint covers: the trust core names it (withheld)
        fetched += len(page)
        bar(fetched)
        yield page


def _state_dir(args: argparse.Namespace, genesis: bytes) -> Path:
    base = (
        args.state
        or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        / "pht"
        / "audit"
    )
    return Path(base) / hashlib.sha256(genesis).hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    client: Client | None = None
    if args.data is not None:
        try:
            records = read_log(args.data)
        except VerificationError as exc:
            return _failed(exc)
        stored = args.data / "checkpoint"
        served = stored.read_bytes() if stored.exists() else None
        size = len(records)
        genesis = records[0] if records else b""
        source: Iterable[list[bytes]] = [records]
    else:
        client = connect(args).client
        served = client.checkpoint()
        size = unverified_size(served)  # verified with the entries, by the trust core
        first, _ = client.entry_records(0, 1)
        genesis = first[0] if first else b""
    if not size or not genesis:
        raise CliError("the ledger is empty")
    memory = _state_dir(args, genesis)
    seen = memory / "checkpoint"
    trusted = seen.read_bytes() if seen.exists() else None
    bar = Bar(size, "fetching and verifying" if client is not None else "verifying")
    if client is not None:
        source = _pages(client, size, bar)
    try:
        _, report = audit(
            source,
            checkpoint=served,
            trusted=trusted,
            exact=client is not None,
            genesis=args.genesis,
            workers=args.workers,
            progress=None if client is not None else bar,
        )
    except VerificationError as exc:
        bar.close()
        return _failed(exc)
    except WithheldEntriesError as exc:
        bar.close()
        if args.data is None:
            return _untrusted(exc, memory)
        # On a data directory, the log lost what its own stored checkpoint covers: damage.
        return _failed(
            VerificationError(
                size,
                f"the stored checkpoint covers entries the log no longer holds from entry {size} "
                f"on (damaged or removed): {exc}",
            )
        )
    except UntrustedLogError as exc:
        bar.close()
        return _untrusted(exc, memory)
    finally:
        if client is not None:
            client.close()
    bar(size)
    bar.close()
    if served is not None:  # verified, and never smaller than the one trusted before
        memory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(seen, served)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(render(report))
    if args.data is not None:
        return _check_blobs(args.data, records)
    return 0


def _check_blobs(data: Path, records: list[bytes]) -> int:
    """Every blob the ledger names for the registry is in ``data/objects`` and hashes to its
    name; each one that is not is named by entry, field and sha256 (on stderr), exit 2."""
    bar = Bar(len(records), "checking blobs")
    found = check_blobs(records, BlobStore(data / "objects", read_only=True), progress=bar)
    bar(len(records))
    bar.close()
    if not found.findings:
        print(f"blobs: all {found.checked} the ledger names are stored whole", file=sys.stderr)
        return 0
    print(
        f"pht audit: FAILED: {len(found.findings)} blob references name blobs the data "
        f"directory does not hold whole ({found.checked} blobs checked):",
        file=sys.stderr,
    )
    for finding in found.findings:
        print(f"  {finding}", file=sys.stderr)
    return EXIT_FAILED


def _untrusted(exc: UntrustedLogError, memory: Path) -> int:
    folder = memory / "evidence" / f"{type(exc).__name__}-{int(time.time())}"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for n, note in enumerate((exc.trusted, exc.served)):
        write_atomic(folder / f"checkpoint-{n}.txt", note)
    print(
        f"pht audit: THE REGISTRY CANNOT BE TRUSTED ({type(exc).__name__}): {exc}; "
        f"evidence kept in {folder}",
        file=sys.stderr,
    )
    return EXIT_UNTRUSTED


def _failed(exc: VerificationError) -> int:
    print(f"pht audit: FAILED: {exc}", file=sys.stderr)
    return EXIT_FAILED


def render(report: AuditReport) -> str:
    lines = [
        f"ledger {report.origin} ({report.name}): {report.size} entries, root {report.root[:16]}, "
        f"all hashes, signatures, rules and proofs verified",
        "",
        "members:",
    ]
    for m in report.members:
        lines.append(
            f"  entry {m.index:>6}  {m.action:<8} {m.name:<16} {m.role:<10} {m.key_id[:16]}"
        )
    lines += ["", "tasks:"]
    for t in report.tasks:
        label = f" [{t.label}]" if t.label else ""
        lines.append(f"  {t.event_id[:12]} entry {t.index} by {t.author}: {t.image}{label}")
        for site, run in sorted(t.sites.items()):
            digest = run.image_digest or "-"
            reason = f" ({run.reason[:80]})" if run.reason else ""
            lines.append(f"      {site:<14} {run.state:<10} {digest}{reason}")
    return "\n".join(lines)
