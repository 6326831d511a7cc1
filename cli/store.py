"""``pht store copy``: copy a ledger between its data directory and a PostgreSQL database.

::

    pht store copy --from DIR --to postgresql://...
    pht store copy --from postgresql://... --to NEWDIR

Both ends must not be in use (the source's lock is taken; no registry may serve it meanwhile),
and the target must be empty. Every source entry is replayed and checked before anything is
written, and the target is read back and compared: entries, Merkle root, log digest, the stored
checkpoint, every blob and the witness cosignatures (:mod:`ledger.store.copy`). Prints what was
copied, as JSON.

The log key is not copied: serve a database with the data directory that holds it
(``pht serve --data DIR --store postgresql://...``); to serve a new directory, put the log key
(``log.key``) there first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.errors import CliError
from ledger.store.backend import Backend, open_backend
from ledger.store.copy import copy_ledger
from ledger.store.postgres import is_database_url
from ledger.store.postgres.schema import shown


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("store", help="move a ledger between stores")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    copy = actions.add_parser("copy", help="copy a ledger to an empty store, verified")
    copy.add_argument("--from", dest="source", required=True, help="data directory or URL")
    copy.add_argument("--to", dest="target", required=True, help="URL or new data directory")
    copy.set_defaults(run=run_copy)


def _open(where: str, *, create: bool) -> Backend:
    if is_database_url(where):
        return open_backend(Path(), where, create=create)
    if "://" in where:
        raise CliError(f"{where!r}: expected a data directory or a postgresql:// URL")
    return open_backend(Path(where), None, create=create)


def run_copy(args: argparse.Namespace) -> int:
    source = _open(args.source, create=False)
    try:
        copied = copy_ledger(source, lambda: _open(args.target, create=True))
    finally:
        source.close()
    summary = {
        "from": shown(args.source),
        "to": shown(args.target),
        "entries": copied.entries,
        "root": copied.root.hex(),
        "blobs": copied.blobs,
        "checkpoint_size": copied.checkpoint_size,
        "log_bytes": copied.log_bytes,
        "cosignatures": copied.cosignatures,
    }
    print(json.dumps(summary, indent=2))
    return 0
