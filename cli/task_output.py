"""``pht task results`` and ``pht task logs``: what the sites returned, checked and decrypted.

Every result is read from the CLI's verified replay of the ledger (the Analyst's
:meth:`~api.client.analyst.Analyst.results`), every output and log checked against the hash in
the site's signed result, then decrypted with the researcher's age identity when the site
encrypted it. Nothing is reported as saved while it is still ciphertext: a file left encrypted
(no identity) keeps a ``.age`` suffix, is named on stderr with the fix, and the command exits 5.
Sizes shown are those of the saved (plaintext) files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from api.client.analyst import Analyst
from api.client.answers import TaskView
from api.client.run import SiteResult
from api.errors import AnalysisError
from cli.errors import CliError
from cli.profile import Connection, add_connection_arguments, connect
from cli.taskid import resolve_task
from crypto.age import AgeIdentity, decrypt_file, is_age, is_age_file
from ledger.bodies import Output, Result
from ledger.tasks import LOG_TRUNCATED

EXIT_LEFT_ENCRYPTED = 5
IDENTITY_HELP = "your age identity (default: the profile's, else NAME.age beside your key)"


def add_parsers(sub: Any, id_help: str) -> None:
    results = sub.add_parser(
        "results",
        help="download every site's verified outputs and log",
        description="Download every finished site's outputs into DIR/SITE/ and its container "
        "log into DIR/SITE.log, each checked against the hash in the site's signed result and "
        "decrypted with your age identity. Exits 5 when something is left encrypted (no "
        "identity): such files keep a .age suffix.",
    )
    results.add_argument("task", help=id_help)
    results.add_argument("--out", required=True, type=Path, help="folder for SITE/ and SITE.log")
    results.add_argument("--json", action="store_true", help="print only what was saved, as JSON")
    results.add_argument("--identity", type=Path, help=IDENTITY_HELP)
    add_connection_arguments(results)
    results.set_defaults(run=_results)

    logs = sub.add_parser(
        "logs",
        help="print each site's container log (stdout and stderr)",
        description="Print each finished site's container log, checked against the hash in the "
        "site's signed result and decrypted; says when the site kept only the log's end. Exits "
        "5 when a log is encrypted and no age identity is at hand.",
    )
    logs.add_argument("task", help=id_help)
    logs.add_argument("--site", help="only this site's log")
    logs.add_argument("--identity", type=Path, help=IDENTITY_HELP)
    logs.add_argument("--json", action="store_true", help="print the logs as JSON")
    add_connection_arguments(logs)
    logs.set_defaults(run=_logs)


def cancellation(analyst: Analyst, task_id: str, cancelled: int | None) -> dict[str, Any] | None:
    """``{"index", "reason"}`` of the task's cancellation, from the verified replay."""
    if cancelled is None:
        return None
    found = analyst.cancellation(task_id)
    if found is None:
        return None
    index, reason = found
    return {"index": index, "reason": reason}


def describe_cancel(cancelled: dict[str, Any]) -> str:
    reason = cancelled["reason"]
    return f"cancelled at entry {cancelled['index']}" + (f": {reason}" if reason else "")


def _finished(conn: Connection, task: str) -> tuple[Analyst, str, dict[str, SiteResult], TaskView]:
    analyst = conn.analyst()
    task_id = resolve_task(analyst, task)
    view = conn.client.task(task_id)
    return analyst, task_id, analyst.results(view), view


def _results(args: argparse.Namespace) -> int:
    conn = connect(args)
    analyst, task_id, results, view = _finished(conn, args.task)
    identity = conn.identity()
    saved: dict[str, Any] = {}
    left: list[Path] = []
    for site, run in sorted(results.items()):
        folder = args.out / site
        folder.mkdir(parents=True, exist_ok=True)
        files = [
            _save_output(conn, output, folder, identity, left) for output in run.result.outputs
        ]
        saved[site] = {
            "state": run.result.state.value,
            "reason": run.result.reason,
            "files": files,
            "log": _save_log(analyst, run.result, args.out / f"{site}.log", identity, left),
        }
    missing = sorted(set(view.sites) - set(results))
    cancelled = cancellation(analyst, task_id, view.cancelled)
    if args.json:
        report = {
            "task": task_id,
            "sites": saved,
            "unfinished": missing,
            "cancelled": cancelled,
            "left_encrypted": [str(p) for p in left],
        }
        print(json.dumps(report, indent=2))
    else:
        for site, info in saved.items():
            size = sum(f.get("size", 0) for f in info["files"])
            log = f", log {info['log']['path']}" if info["log"] else ", no log"
            print(
                f"{site}: {info['state']}, {len(info['files'])} file(s) ({size} bytes) in "
                f"{args.out / site}{log}"
            )
        for site in missing:
            print(f"{site}: no result yet")
        if cancelled is not None:
            print(describe_cancel(cancelled))
    if left:
        print(
            f"pht: {len(left)} file(s) left encrypted (saved with a .age suffix: "
            f"{', '.join(str(p) for p in left[:3])}{'...' if len(left) > 3 else ''}): no age "
            "identity to decrypt them; pass --identity NAME.age, or set it once with "
            "`pht profile set --identity NAME.age`",
            file=sys.stderr,
        )
        return EXIT_LEFT_ENCRYPTED
    return 0


def _save_output(
    conn: Connection, output: Output, folder: Path, identity: AgeIdentity | None, left: list[Path]
) -> dict[str, Any]:
    if output.delivered_to is not None:
        return {"name": output.name, "delivered_to": output.delivered_to}
    target = folder / output.name
    conn.client.download_blob(output.sha256, target)
    encrypted = is_age_file(target)
    if encrypted and identity is not None:
        scratch = target.with_name(f".{target.name}.plain")
        try:
            decrypt_file(target, scratch, [identity])
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        scratch.replace(target)
    elif encrypted:
        target = target.replace(target.with_name(target.name + ".age"))
        left.append(target)
    return {
        "name": output.name,
        "path": str(target),
        "sha256": output.sha256,
        "size": target.stat().st_size,
        "encrypted": encrypted,
        "decrypted": encrypted and identity is not None,
    }


def _save_log(
    analyst: Analyst, result: Result, target: Path, identity: AgeIdentity | None, left: list[Path]
) -> dict[str, Any] | None:
    if result.log is None:
        return None
    data = analyst.client.get_blob(result.log.sha256, max_size=result.log.size)
    encrypted = is_age(data)
    if encrypted and identity is None:
        target = target.with_name(target.name + ".age")
        left.append(target)
    else:
        data = analyst.open(data, f"the log in {target.name}")
    target.write_bytes(data)
    return {
        "path": str(target),
        "size": len(data),
        "encrypted": encrypted,
        "truncated": data.startswith(LOG_TRUNCATED),
    }


def _logs(args: argparse.Namespace) -> int:
    conn = connect(args)
    analyst, task_id, results, view = _finished(conn, args.task)
    sites = sorted(view.sites)
    if args.site is not None:
        if args.site not in view.sites:
            raise CliError(
                f"{args.site!r} is not a site of task {task_id[:12]} (its sites: "
                f"{', '.join(sites)})"
            )
        sites = [args.site]
    report: dict[str, Any] = {}
    locked: list[str] = []
    for site in sites:
        run = results.get(site)
        if run is None:
            report[site] = {"state": view.sites[site].state, "finished": False, "log": None}
            continue
        try:
            data = analyst.log(run.result)
        except AnalysisError:
            if conn.identity_file is not None:
                raise  # a wrong identity, an altered blob: the error says which
            data = b""
            locked.append(site)
        truncated = data.startswith(LOG_TRUNCATED)
        report[site] = {
            "state": run.result.state.value,
            "finished": True,
            "exit_code": run.result.exit_code,
            "encrypted": site in locked,
            "truncated": truncated,
            "log": None
            if site in locked
            else data.removeprefix(LOG_TRUNCATED).decode("utf-8", errors="replace"),
        }
    if args.json:
        print(json.dumps({"task": task_id, "sites": report}, indent=2))
    else:
        _print_logs(report)
    if locked:
        print(
            f"pht: the log of {', '.join(locked)} is encrypted for you and no age identity is "
            "at hand: pass --identity NAME.age, or set it once with "
            "`pht profile set --identity NAME.age`",
            file=sys.stderr,
        )
        return EXIT_LEFT_ENCRYPTED
    return 0


def _print_logs(report: dict[str, Any]) -> None:
    for site, info in report.items():
        if not info["finished"]:
            print(f"==> {site}: {info['state']}, no result yet <==")
            continue
        exit_code = "" if info["exit_code"] is None else f", exit code {info['exit_code']}"
        cut = ", truncated by the site: only the end was kept" if info["truncated"] else ""
        print(f"==> {site}: {info['state']}{exit_code}{cut} <==")
        text = info["log"]
        if text is None:
            print("(encrypted)")
        elif not text:
            print("(no output)")
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
        if info["truncated"]:
            print(f"pht: the log of {site} was truncated by the site", file=sys.stderr)
    sys.stdout.flush()
