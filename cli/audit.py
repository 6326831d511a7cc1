"""``pht audit``: replay and check a whole ledger, then report who ran what where.

    pht audit --registry URL [--key FILE] [--cache-tiles]
    pht audit --data DIR [--store postgresql://...]
              [--json] [--workers N] [--genesis HASH] [--state DIR]

Checks every hash, the chain, every signature, every rule, the Merkle root against the registry's
signed checkpoint, and that history is consistent with the newest checkpoint this auditor saw on
an earlier run (kept in ``--state``, default ``~/.local/state/pht/audit``), all through the trust
core (:mod:`ledger.trust`). Exits 0 when all holds; 2 naming the first bad entry and what is
wrong; 3 when the registry served something other than the history it signed (a rollback, a
fork, a rewritten history, another genesis), keeping both checkpoints as evidence in the state
directory, as a site does. Progress goes to stderr.

From a registry that serves the log as C2SP tlog-tiles it reads the entries as entry bundles,
each held to the signed checkpoint as it arrives (:class:`api.client.tiles.TileReader`: a bundle
that is not the signed one is a lie, exit 3); from one that does not, as pages of entries. With
``--cache-tiles`` the full bundles (immutable) are kept in the state directory and read from there
on the next audit (verified again, like everything else).

With ``--data`` it reads the registry's stored ledger (with ``--store``, as for ``pht serve``,
the entries, checkpoint and blobs in its PostgreSQL database) and also hashes every blob the
ledger names for the registry (a task's config_blob, a result's outputs and log; not outputs
delivered to a site's FileService, which the registry never holds) and exits 2 naming, on
stderr, each missing or damaged one by entry, field and sha256.

Witnesses (DESIGN 12): from a registry it audits the newest checkpoint witnesses cosigned, when
there is one; with a witness policy in force, a checkpoint short of its quorum fails the audit
(exit 2). The report says, for each checkpoint verified, which witnesses cosigned it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.client.evidence import keep_evidence
from api.client.registry import Client
from api.client.tiles import TileReader
from api.errors import InvalidRequestError
from cli.errors import CliError
from cli.profile import connect, state_home
from cli.review_report import render_review
from ledger.audit import AuditReport, audit
from ledger.bodies import Consortium
from ledger.checkpoint import Checkpoint, unverified_size
from ledger.cosignature import note_signature_lines
from ledger.errors import (
    ForbiddenEntryError,
    LedgerError,
    UntrustedLogError,
    VerificationError,
    WithheldEntriesError,
)
from ledger.events import Entry
from ledger.store import Blobs
from ledger.store.blobcheck import check_blobs
from ledger.store.durable import write_atomic
from ledger.store.logfiles import LOG_NAME
from ledger.store.readlog import read_stored
from ledger.trust import verify_note

EXIT_FAILED = 2
EXIT_UNTRUSTED = 3
PAGE = 1000


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("audit", help="verify a whole ledger and report on it")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="a registry's data directory")
    source.add_argument("--registry", help="a registry URL (needs a member key: --key)")
    parser.add_argument(
        "--store",
        metavar="URL",
        help="with --data: the PostgreSQL database (postgresql://...) the registry keeps its "
        "entries and blobs in (pht init/serve --store)",
    )
    parser.add_argument("--key", type=Path, help="your private key file (default: the profile's)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--genesis",
        help="pin the genesis entry hash (genesis_hash of `pht init`); without it (or the "
        "profile's) the first audit trusts what the registry serves and later ones hold it to that",
    )
    parser.add_argument("--state", type=Path, help="where this auditor keeps checkpoints it saw")
    parser.add_argument(
        "--cache-tiles",
        action="store_true",
        help="keep the registry's full entry bundles in the state directory for the next audit "
        "(about the ledger's size on disk; still verified each time)",
    )
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
        try:
            page, _ = client.entry_records(fetched, min(PAGE, size - fetched))
        except InvalidRequestError as exc:
            if exc.slug != "range-not-satisfiable":
                raise
            page = []
        if not page:
            return  # fewer than the checkpoint covers: the trust core names it (withheld)
        fetched += len(page)
        bar(fetched)
        yield page


def _records(
    client: Client, checkpoint: Checkpoint, bar: Bar, memory: Path | None
) -> Iterator[list[bytes]]:
    """The ledger's records up to the checkpoint: through tiles, each bundle verified against
    it, when the registry offers them (kept in ``memory``/tiles when given); else page by
    page."""
    cache = None
    if memory is not None:
        memory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cache = memory / "tiles"
    reader = TileReader(client, cache=cache)
    if not reader.offered():
        yield from _pages(client, checkpoint.size, bar)
        return
    fetched = 0
    for bundle in reader.bundles(checkpoint):
        fetched += len(bundle)
        bar(fetched)
        yield bundle


def _state_dir(args: argparse.Namespace, source: str) -> Path:
    """Where this auditor remembers what it verified of ``source`` (a registry URL or a data
    directory): keyed by the source, not by what it serves, so a registry that swaps its whole
    history (another genesis) is compared with what it served before."""
    base = args.state or state_home() / "audit"
    return Path(base) / hashlib.sha256(source.encode()).hexdigest()[:16]


def _checkpoint(client: Client, seen: Path) -> bytes:
    """The checkpoint to audit: the newest one witnesses cosigned, when the registry serves one
    (and it is not older than what this auditor verified before), else the newest checkpoint.
    With a witness policy in force, the audit then demands its quorum (:mod:`ledger.audit`)."""
    cosigned = client.cosigned_checkpoint()
    try:
        witnessed = len(note_signature_lines(cosigned)) > 1
        remembered = unverified_size(seen.read_bytes()) if seen.exists() else 0
        if witnessed and unverified_size(cosigned) >= remembered:
            return cosigned
    except LedgerError:
        pass  # judged below, on the newest checkpoint
    return client.checkpoint()


def _signed(note: bytes, genesis: bytes) -> Checkpoint:
    """The checkpoint ``note``, verified with the log key the genesis names (so that an
    unsigned claim never sets how much is fetched)."""
    entry = Entry.from_canonical(genesis)
    body = entry.event.event.body
    if not isinstance(body, Consortium):
        raise ForbiddenEntryError("the registry's entry 0 is not a genesis", index=0)
    return verify_note(note, log_key=body.log_key, origin=body.origin)


@dataclass
class _Source:
    """What is audited: a data directory's records, or a registry's pages."""

    id: str  # the registry's URL or the data directory's path: keys the auditor's memory
    served: bytes | None  # the checkpoint served (or stored) for it
    size: int
    genesis: bytes  # entry 0's stored bytes
    pinned: str | None
    records: list[bytes] = field(default_factory=list)  # a data directory's, read whole
    blobs: Blobs | None = None  # a data directory's (or its database's)
    client: Client | None = None
    checkpoint: Checkpoint | None = None  # a registry's, verified


def _open_source(args: argparse.Namespace) -> _Source:
    """Raises VerificationError (a damaged data directory) or UntrustedLogError (a registry's
    checkpoint that does not verify with the log key its genesis names)."""
    if args.store is not None and args.data is None:
        raise CliError("--store goes with --data (the registry's data directory)")
    if args.data is not None:
        database = not (args.data / LOG_NAME).exists() and (args.data / "log.key").exists()
        if args.store is None and database:
            raise CliError(
                f"{args.data} keeps its entries in a database (pht init --store): add "
                "--store postgresql://... as for pht serve"
            )
        stored = read_stored(args.data, args.store)
        return _Source(
            id=stored.where,
            served=stored.checkpoint,
            size=len(stored.records),
            genesis=stored.records[0] if stored.records else b"",
            pinned=args.genesis,
            records=stored.records,
            blobs=stored.blobs,
        )
    conn = connect(args)
    client = conn.client
    served = _checkpoint(client, _state_dir(args, client.base_url) / "checkpoint")
    first, _ = client.entry_records(0, 1)
    genesis = first[0] if first else b""
    source = _Source(
        id=client.base_url,
        served=served,
        size=0,
        genesis=genesis,
        pinned=args.genesis or conn.genesis,
        client=client,
    )
    try:
        if genesis:
            source.checkpoint = _signed(served, genesis)
            source.size = source.checkpoint.size
    except LedgerError as exc:
        client.close()
        lie = exc if isinstance(exc, UntrustedLogError) else ForbiddenEntryError(str(exc))
        raise _Refused(lie.with_notes(trusted=b"", served=served), source.id) from exc
    return source


class _Refused(Exception):
    """A registry whose checkpoint does not verify before any entry is fetched."""

    def __init__(self, lie: UntrustedLogError, source_id: str) -> None:
        super().__init__(str(lie))
        self.lie = lie
        self.source_id = source_id


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    try:
        src = _open_source(args)
    except VerificationError as exc:
        return _failed(exc)
    except _Refused as refused:
        return _untrusted(refused.lie, _state_dir(args, refused.source_id))
    client, served, size, genesis = src.client, src.served, src.size, src.genesis
    pinned, records = src.pinned, src.records
    source: Iterable[list[bytes]] = [records]
    if not size or not genesis:
        raise CliError("the ledger is empty")
    memory = _state_dir(args, src.id)
    seen = memory / "checkpoint"
    trusted = seen.read_bytes() if seen.exists() else None
    seen_genesis = memory / "genesis"
    anchor = "pinned" if pinned is not None else "first-use"
    if pinned is None and seen_genesis.exists():
        pinned = seen_genesis.read_text().strip()  # the genesis this auditor verified before
        anchor = "remembered"
    bar = Bar(size, "fetching and verifying" if client is not None else "verifying")
    if client is not None and src.checkpoint is not None:
        source = _records(client, src.checkpoint, bar, memory if args.cache_tiles else None)
    try:
        _, report = audit(
            source,
            checkpoint=served,
            trusted=trusted,
            exact=client is not None,
            genesis=pinned,
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
    memory.mkdir(parents=True, exist_ok=True, mode=0o700)
    genesis_hash = Entry.from_canonical(genesis).hash
    write_atomic(seen_genesis, genesis_hash.encode())
    newest = max((n for n in (served, trusted) if n is not None), key=unverified_size, default=None)
    if newest is not None and newest != trusted:  # both verified; the memory never goes back
        write_atomic(seen, newest)
    _print_report(report, genesis_hash, anchor, as_json=args.json)
    if src.blobs is not None:
        return _check_blobs(src.blobs, records, "the database" if args.store else None)
    return 0


def _print_report(report: AuditReport, genesis_hash: str, anchor: str, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**report.to_dict(), "genesis": genesis_hash, "genesis_trust": anchor}))
    else:
        print(render(report))
        print(f"genesis {genesis_hash}: {GENESIS_TRUST[anchor]}")
    if anchor == "first-use":
        print(
            f"pht audit: note: trusted on first use: the genesis was not pinned, so this audit "
            "verified the ledger the registry serves, whichever it is; pin it with "
            f"--genesis {genesis_hash} (or `pht profile set --genesis ...`) after checking that "
            "hash with the consortium",
            file=sys.stderr,
        )


def _check_blobs(blobs: Blobs, records: list[bytes], where: str | None) -> int:
    """Every blob the ledger names for the registry is stored and hashes to its name; each
    one that is not is named by entry, field and sha256 (on stderr), exit 2. Closes ``blobs``."""
    bar = Bar(len(records), "checking blobs")
    try:
        found = check_blobs(records, blobs, progress=bar)
    finally:
        blobs.close()
    bar(len(records))
    bar.close()
    if not found.findings:
        print(f"blobs: all {found.checked} the ledger names are stored whole", file=sys.stderr)
        return 0
    print(
        f"pht audit: FAILED: {len(found.findings)} blob references name blobs "
        f"{where or 'the data directory'} does not hold whole ({found.checked} blobs checked):",
        file=sys.stderr,
    )
    for finding in found.findings:
        print(f"  {finding}", file=sys.stderr)
    return EXIT_FAILED


def _untrusted(exc: UntrustedLogError, memory: Path) -> int:
    folder = keep_evidence(memory / "evidence", exc)
    print(
        f"pht audit: THE REGISTRY CANNOT BE TRUSTED ({type(exc).__name__}): {exc}; "
        f"evidence kept in {folder}",
        file=sys.stderr,
    )
    return EXIT_UNTRUSTED


def _failed(exc: VerificationError) -> int:
    print(f"pht audit: FAILED: {exc}", file=sys.stderr)
    return EXIT_FAILED


GENESIS_TRUST = {
    "pinned": "pinned (--genesis or the profile)",
    "remembered": "the one this auditor verified on its first audit of this source",
    "first-use": "trusted on first use (not pinned)",
}


def render(report: AuditReport) -> str:
    title = report.origin if report.name == report.origin else f"{report.name} ({report.origin})"
    lines = [
        f"ledger {title}: {report.size} entries, root {report.root[:16]}, "
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
        if t.cancelled is not None:
            why = f": {t.cancel_reason}" if t.cancel_reason else " (no reason given)"
            lines.append(f"      cancelled at entry {t.cancelled}{why}")
    return "\n".join([*lines, *render_review(report), *render_witnesses(report)])


def render_witnesses(report: AuditReport) -> list[str]:
    """For each checkpoint verified, the witnesses that cosigned it (DESIGN 12)."""
    if not report.witnessed and report.witness_policy is None:
        return []
    lines = ["", "witnesses:"]
    if report.witness_policy is not None:
        quorum = [line for line in report.witness_policy.splitlines() if line.startswith("quorum")]
        lines.append(f"  policy in force ({', '.join(quorum) or 'no quorum line'})")
    for size, names in report.witnessed:
        lines.append(f"  checkpoint of size {size}: cosigned by {', '.join(names) or 'nobody'}")
    return lines
