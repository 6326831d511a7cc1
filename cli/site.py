"""``pht site list``: each site's presence, as the registry last heard from it.

    pht site list [--json]

Presence comes from the sites' signed heartbeats, which the registry keeps in memory (the latest
per site, never in the ledger: :mod:`api.registry.presence`); it is the registry's word, not
ledger history. A site is ``online``, ``lagging N behind`` (behind the ledger and not catching up
for two heartbeat intervals), ``offline since T`` (no heartbeat for three intervals; ``T`` is the
last one), or ``never seen`` since the registry started. ``--json`` prints the registry's answer
(``GET /v1/sites``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from api.client.answers import SiteList, SiteRow
from cli.profile import add_connection_arguments, connect


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("site", help="the consortium's sites and whether they are online")
    sub = parser.add_subparsers(dest="site_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="each site: online, lagging, offline since when")
    listing.add_argument("--json", action="store_true", help="JSON only, on stdout")
    add_connection_arguments(listing)
    listing.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sites = connect(args).client.sites()
    if args.json:
        answer = {
            "size": sites.size,
            "interval_s": sites.interval_s,
            "sites": [asdict(row) for row in sites.sites],
        }
        print(json.dumps(answer, indent=2))
        return 0
    print(table(sites))
    return 0


def presence(row: SiteRow) -> str:
    if row.presence == "lagging":
        return f"lagging {row.behind} behind"
    if row.presence == "offline":
        return f"offline since {_time(row.last_seen)}"
    if row.presence == "never":
        return "never seen"
    return "online"


def _time(text: str | None) -> str:
    return "-" if text is None else text[:19].replace("T", " ")


def _flag(value: bool | None) -> str:
    return "-" if value is None else "ok" if value else "DOWN"


def table(sites: SiteList) -> str:
    head = [
        "SITE",
        "ORGANIZATION",
        "PRESENCE",
        "LAST SEEN",
        "VERIFIED",
        "RUNNING",
        "DOCKER",
        "SPARQL",
        "VERSION",
    ]
    rows = [
        [
            row.site,
            row.organization or "-",
            presence(row),
            _time(row.last_seen),
            "-" if row.verified_size is None else str(row.verified_size),
            "-" if row.running is None else str(row.running),
            _flag(row.docker),
            _flag(row.sparql),
            row.version or "-",
        ]
        for row in sites.sites
    ]
    if not rows:
        return "no sites"
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *rows]
    ]
    lines.append(f"(ledger size {sites.size}; heartbeats every {sites.interval_s:g} s)")
    return "\n".join(lines)
