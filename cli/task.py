"""``pht task post|watch|results|logs|cancel``: a researcher's tasks.

    pht task post --image REF --config FILE --sites a,b,c [--pin-digest] [--label T] [--parent ID]
                  [--recipient NAME [--deliver]] [--inputs ID,ID] [--plaintext]
                  [--no-review-check] [--json]
    pht task watch ID [--timeout S] [--json]     live per-site progress until all have finished
    pht task results ID --out DIR [--identity F] [--json]
                                                 every output (checked by its hash, decrypted)
                                                 into DIR/SITE/, each site's log as DIR/SITE.log
    pht task logs ID [--site S] [--identity F] [--json]
                                                 each site's container log, decrypted
    pht task cancel ID [--reason TEXT] [--json]

``ID`` is a task id or any unique prefix of it (at least 4 hex digits).

Outputs and logs are encrypted by the sites for the task's recipient (by default the author), if
that member has published an encryption key (``encryption_key`` in the members file,
``pht member add --encryption-key`` or ``pht member rekey``). ``post`` refuses a recipient
without one, since the sites would then store the results in plaintext on the registry, unless
``--plaintext`` says that is meant. Results are decrypted with your age identity: ``--identity``,
else the profile's, else ``NAME.age`` beside your key ``NAME.key``.

``--pin-digest`` asks the image registry (through a Docker engine on this machine, which must be
running) for the image's current digest and posts ``REF@sha256:...``, so every site runs exactly
that image. A configuration larger than 16 KiB is uploaded as a blob and named by its hash.

Before posting, ``post`` says (on stderr) when the image is not approved by the consortium's
algorithm review: sites that require review will refuse the task, the others run it. It reads
that from its own verified replay of the ledger (as ``pht image list`` does), which on a large
ledger takes a while; ``--no-review-check`` skips it.

With ``--json`` a command prints only JSON on stdout (progress goes to stderr).
Exit codes: 0 done; 1 error; 4 (watch) a site did not complete; 5 (results, logs) something was
left encrypted for want of an age identity.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import docker
from docker.errors import APIError, DockerException

from api.client.analyst import Analyst
from api.client.answers import TaskProgress
from api.errors import TransportError
from cli import task_list, task_output
from cli.errors import CliError
from cli.profile import add_connection_arguments, connect
from cli.taskid import resolve_task, resolve_tasks
from crypto.keys import KeyId
from ledger.bodies import Cancel, Limits
from ledger.canonical import parse_json
from ledger.view import View

EXIT_NOT_COMPLETED = 4
ID_HELP = "the task id, or a unique prefix of it (at least 4 hex digits)"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "task",
        help="post, watch, read and cancel tasks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="task_command", metavar="ACTION", required=True)

    post = sub.add_parser("post", help="post a signed task; prints its id")
    post.add_argument("--image", required=True, help="image reference, e.g. myconsortium/avg:1.2")
    post.add_argument("--config", required=True, type=Path, help="JSON configuration file")
    post.add_argument("--sites", required=True, help="comma-separated site names")
    post.add_argument(
        "--pin-digest",
        action="store_true",
        help="pin the image's current digest (asks the image registry via the local Docker engine)",
    )
    post.add_argument("--label", help="a short label for humans")
    post.add_argument("--parent", help="the previous task of an iteration (id or prefix)")
    post.add_argument("--timeout-s", type=int, help="ask sites for at most this run time")
    post.add_argument("--memory-mb", type=int, help="ask sites for at most this memory")
    post.add_argument("--recipient", help="encrypt the outputs for this member (default: you)")
    post.add_argument(
        "--deliver", action="store_true", help="send outputs to the recipient site's FileService"
    )
    post.add_argument("--inputs", help="comma-separated earlier tasks whose delivered files to use")
    post.add_argument(
        "--no-review-check", action="store_true", help="do not say whether review approved it"
    )
    post.add_argument(
        "--plaintext",
        action="store_true",
        help="post even though the recipient has published no encryption key (the sites then "
        "store outputs and logs in plaintext on the registry)",
    )
    post.add_argument(
        "--json", action="store_true", help='print {"task": ID, "index": N} instead of the id'
    )
    add_connection_arguments(post)
    post.set_defaults(run=_post)

    watch = sub.add_parser("watch", help="show each site's progress until all have finished")
    watch.add_argument("task", help=ID_HELP)
    watch.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds (default 3600); an unreachable registry is retried until then",
    )
    watch.add_argument(
        "--json", action="store_true", help="print only the final results as JSON (table: stderr)"
    )
    add_connection_arguments(watch)
    watch.set_defaults(run=_watch)

    task_output.add_parsers(sub, ID_HELP)

    cancel = sub.add_parser("cancel", help="cancel a task (its author or an admin)")
    cancel.add_argument("task", help=ID_HELP)
    cancel.add_argument("--reason", help="why; shown by watch, results and audit")
    cancel.add_argument("--json", action="store_true", help='print {"task": ID, "index": N}')
    add_connection_arguments(cancel)
    cancel.set_defaults(run=_cancel)
    task_list.add_parser(sub)


def _config(path: Path) -> Any:
    try:
        return parse_json(path.read_bytes(), what=f"config file {path}")
    except OSError as exc:
        raise CliError(f"cannot read config file {path}: {exc.strerror}") from exc


def pin_digest(image: str) -> str:
    """``image@sha256:...`` as the image registry serves it now, asked through the Docker engine
    on this machine (which must be running)."""
    if "@" in image:
        return image
    try:
        client = docker.from_env(timeout=30)
    except DockerException as exc:
        raise CliError(_no_engine(image)) from exc
    try:
        digest = client.images.get_registry_data(image).id
    except APIError as exc:
        what = exc.explanation or str(exc)
        if exc.status_code == 404 or "manifest unknown" in str(what):
            raise CliError(
                f"cannot pin {image}: the image registry has no such image or tag ({what})"
            ) from exc
        raise CliError(f"cannot pin {image}: the image registry refused: {what}") from exc
    except DockerException as exc:
        raise CliError(_no_engine(image)) from exc
    finally:
        client.close()
    return f"{image}@{digest}"


def _no_engine(image: str) -> str:
    return (
        f"cannot pin {image}: --pin-digest asks the image registry through a Docker engine on "
        "this machine, and none answers; start Docker, or name the image by digest "
        "(REF@sha256:...) instead"
    )


def _post(args: argparse.Namespace) -> int:
    conn = connect(args)
    config = _config(args.config)
    if not isinstance(config, dict):
        raise CliError(f"{args.config}: the configuration must be a JSON object")
    image = pin_digest(args.image) if args.pin_digest else args.image
    sites = tuple(s.strip() for s in args.sites.split(",") if s.strip())
    limits = None
    if args.timeout_s or args.memory_mb:
        limits = Limits(timeout_s=args.timeout_s, memory_mb=args.memory_mb)
    # The Analyst's path: the genesis is checked against the profile's pin, the origin comes
    # from the verified genesis, a large configuration goes up as a blob.
    analyst = conn.analyst()
    _check_recipient(analyst.ledger_view(), conn.key.key_id, args.recipient, args.plaintext)
    if not args.no_review_check:
        _say_review(analyst, image)
    body = analyst.task_body(
        image,
        config,
        list(sites),
        label=args.label,
        parent=resolve_task(analyst, args.parent) if args.parent else None,
        limits=limits,
        recipient=args.recipient,
        deliver=args.deliver,
        inputs=resolve_tasks(analyst, args.inputs),
    )
    appended = analyst.append(body)
    if args.json:
        print(json.dumps({"task": appended.event_id, "index": appended.index}))
    else:
        print(appended.event_id)
    return 0


def _check_recipient(view: View, key_id: KeyId, recipient: str | None, plaintext: bool) -> None:
    """Refuse (unless ``plaintext``) a task whose outputs would be stored unencrypted: its
    recipient (by default the author) has published no encryption key."""
    name = recipient or view.keys.get(key_id)
    member = view.members.get(name) if name else None
    if member is None or not member.active:
        return  # the registry's rules refuse it, naming why
    if member.encryption_key is not None:
        return
    if plaintext:
        print(
            f"pht: note: {name} has published no encryption key: the sites will store outputs "
            "and logs in plaintext on the registry (--plaintext)",
            file=sys.stderr,
        )
        return
    if recipient is None:
        who = f"you ({name}) have"
        fix = f"publish one (`pht member rekey {name} --identity {name}.age`)"
    else:
        who = f"recipient {name} has"
        fix = f"have one published for {name} (`pht member rekey {name} --encryption-key ...`)"
    raise CliError(
        f"{who} published no encryption key, so the sites would store this task's outputs and "
        f"logs in plaintext on the registry: {fix}, or pass --plaintext to post it anyway"
    )


def _say_review(analyst: Analyst, image: str) -> None:
    """Tell the researcher, before posting, when sites that require review will refuse it."""
    standing = analyst.review_standing(image)
    if standing is None:
        print(
            f"note: {image} is not pinned by digest: sites that require review will refuse this "
            "task (name the image by digest, or pass --pin-digest)",
            file=sys.stderr,
        )
    elif not standing.approved:
        print(
            f"note: {standing.describe()}: sites that require review will refuse this task "
            "(pht image show for its reviews)",
            file=sys.stderr,
        )


def render(progress: TaskProgress) -> str:
    """The per-site progress table."""
    lines = [f"{'site':<16} {'state':<12} entry"]
    for site, state in sorted(progress.sites.items()):
        lines.append(f"{site:<16} {state.state:<12} {'' if state.index is None else state.index}")
    if progress.cancelled is not None:
        lines.append(f"(cancelled at entry {progress.cancelled})")
    return "\n".join(lines)


def _watch(args: argparse.Namespace) -> int:
    conn = connect(args)
    analyst = conn.analyst()
    task_id = resolve_task(analyst, args.task)
    out: TextIO = sys.stderr if args.json else sys.stdout
    tty = out.isatty()
    shown = 0

    def progress(update: TaskProgress) -> None:
        nonlocal shown
        table = render(update)
        if tty and shown:
            out.write(f"\x1b[{shown}F\x1b[J")  # redraw in place
        print(table, file=out, flush=True)
        shown = table.count("\n") + 1
        if not tty:
            print(file=out, flush=True)
            shown = 0

    def unreachable(error: TransportError | None) -> None:
        nonlocal shown
        shown = 0  # the table is not redrawn over this line
        if error is None:
            print("pht: registry reachable again", file=sys.stderr, flush=True)
        else:
            print(
                f"pht: registry unreachable, still retrying (until --timeout): {error}",
                file=sys.stderr,
                flush=True,
            )

    view = analyst.wait(task_id, timeout=args.timeout, progress=progress, unreachable=unreachable)
    results = analyst.results(view)
    cancelled = task_output.cancellation(analyst, task_id, view.cancelled)
    if args.json:
        report = {
            "task": task_id,
            "sites": {s: r.result.to_dict() for s, r in sorted(results.items())},
            "cancelled": cancelled,
        }
        print(json.dumps(report, indent=2))
    else:
        for site, run in sorted(results.items()):
            reason = f": {run.result.reason}" if run.result.reason else ""
            print(f"{site}: {run.result.state.value}{reason}")
        if cancelled is not None:
            print(task_output.describe_cancel(cancelled))
    failed = [r for r in results.values() if r.result.state.value != "completed"]
    return 0 if not failed else EXIT_NOT_COMPLETED


def _cancel(args: argparse.Namespace) -> int:
    conn = connect(args)
    analyst = conn.analyst()
    task_id = resolve_task(analyst, args.task)
    appended = analyst.append(Cancel(task=task_id, reason=args.reason))
    if args.json:
        print(json.dumps({"task": task_id, "index": appended.index}))
    else:
        print(f"cancelled task {task_id[:12]}: entry {appended.index}")
    return 0
