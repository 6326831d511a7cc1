"""``pht task post|watch|results|cancel``: a researcher's tasks.

    pht task post --image REF --config FILE --sites a,b,c [--pin-digest] [--label T] [--parent ID]
                  [--no-review-check]
    pht task watch ID [--timeout S]              live per-site progress until all have finished
    pht task results ID --out DIR [--json]       download every output, each checked by its hash,
                                                 and decrypt it with your age identity
    pht task cancel ID [--reason TEXT]

``--pin-digest`` asks the image registry (through the local Docker engine) for the image's
current digest and posts ``REF@sha256:...``, so every site runs exactly that image.
A configuration larger than 16 KiB is uploaded as a blob and named by its hash.

Before posting, ``post`` says (on stderr) when the image is not approved by the consortium's
algorithm review: sites that require review will refuse the task, the others run it. It reads
that from its own verified replay of the ledger (as ``pht image list`` does), which on a large
ledger takes a while; ``--no-review-check`` skips it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException

from api.client.analyst import Analyst
from api.client.answers import TaskView
from cli import task_list
from cli.errors import CliError
from cli.profile import add_connection_arguments, connect
from crypto.age import decrypt_file, is_age_file
from ledger.bodies import Cancel, EventId, Limits
from ledger.canonical import parse_json
from ledger.events import SignedEvent, new_event


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("task", help="post, watch, read and cancel tasks")
    sub = parser.add_subparsers(dest="task_command", metavar="ACTION", required=True)

    post = sub.add_parser("post", help="post a signed task; prints its id")
    post.add_argument("--image", required=True, help="image reference, e.g. myconsortium/avg:1.2")
    post.add_argument("--config", required=True, type=Path, help="JSON configuration file")
    post.add_argument("--sites", required=True, help="comma-separated site names")
    post.add_argument("--pin-digest", action="store_true", help="pin the image's current digest")
    post.add_argument("--label", help="a short label for humans")
    post.add_argument("--parent", help="the previous task of an iteration")
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
    add_connection_arguments(post)
    post.set_defaults(run=_post)

    watch = sub.add_parser("watch", help="show each site's progress until all have finished")
    watch.add_argument("task")
    watch.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")
    watch.add_argument("--json", action="store_true", help="print the final states as JSON")
    add_connection_arguments(watch)
    watch.set_defaults(run=_watch)

    results = sub.add_parser("results", help="download the verified outputs of every site")
    results.add_argument("task")
    results.add_argument("--out", required=True, type=Path, help="folder for <site>/<output>")
    results.add_argument("--json", action="store_true", help="print what was saved as JSON")
    results.add_argument("--identity", type=Path, help="your age identity (default: profile's)")
    add_connection_arguments(results)
    results.set_defaults(run=_results)

    cancel = sub.add_parser("cancel", help="cancel a task (its author or an admin)")
    cancel.add_argument("task")
    cancel.add_argument("--reason")
    add_connection_arguments(cancel)
    cancel.set_defaults(run=_cancel)
    task_list.add_parser(sub)


def _config(path: Path) -> Any:
    try:
        return parse_json(path.read_bytes(), what=f"config file {path}")
    except OSError as exc:
        raise CliError(f"cannot read config file {path}: {exc.strerror}") from exc


def pin_digest(image: str) -> str:
    """``image@sha256:...`` as the image registry serves it now (via the local Docker engine)."""
    if "@" in image:
        return image
    try:
        client = docker.from_env(timeout=30)
        digest = client.images.get_registry_data(image).id
    except DockerException as exc:
        raise CliError(f"cannot resolve the digest of {image}: {exc}") from exc
    return f"{image}@{digest}"


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
    if not args.no_review_check:
        _say_review(analyst, image)
    task_id = analyst.post(
        image,
        config,
        list(sites),
        label=args.label,
        parent=args.parent,
        limits=limits,
        recipient=args.recipient,
        deliver=args.deliver,
        inputs=tuple(t.strip() for t in (args.inputs or "").split(",") if t.strip()),
    )
    print(task_id)
    return 0


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


def render(view: TaskView) -> str:
    """The per-site progress table."""
    lines = [f"{'site':<16} {'state':<12} entry"]
    for site, state in sorted(view.sites.items()):
        lines.append(f"{site:<16} {state.state:<12} {'' if state.index is None else state.index}")
    return "\n".join(lines)


def _watch(args: argparse.Namespace) -> int:
    conn = connect(args)
    analyst = conn.analyst()
    tty = sys.stdout.isatty()
    shown = 0

    def progress(view: TaskView) -> None:
        nonlocal shown
        table = render(view)
        if tty and shown:
            sys.stdout.write(f"\x1b[{shown}F\x1b[J")  # redraw in place
        print(table, flush=True)
        shown = table.count("\n") + 1
        if not tty:
            print(flush=True)
            shown = 0

    view = analyst.wait(args.task, timeout=args.timeout, progress=progress)
    results = analyst.results(view)
    if args.json:
        print(json.dumps({s: r.result.to_dict() for s, r in results.items()}, indent=2))
    else:
        for site, run in sorted(results.items()):
            reason = f": {run.result.reason}" if run.result.reason else ""
            print(f"{site}: {run.result.state.value}{reason}")
    failed = [r for r in results.values() if r.result.state.value != "completed"]
    return 0 if not failed else 4


def _results(args: argparse.Namespace) -> int:
    conn = connect(args)
    analyst = conn.analyst()
    view = conn.client.task(args.task)
    results = analyst.results(view)
    identity = conn.identity()
    saved: dict[str, Any] = {}
    for site, run in sorted(results.items()):
        folder = args.out / site
        folder.mkdir(parents=True, exist_ok=True)
        files: list[dict[str, Any]] = []
        for output in run.result.outputs:
            if output.delivered_to is not None:
                files.append({"name": output.name, "delivered_to": output.delivered_to})
                continue
            target = folder / output.name
            size = conn.client.download_blob(output.sha256, target)
            encrypted = is_age_file(target)
            if encrypted and identity is not None:
                decrypt_file(target, target.with_name(target.name + ".tmp"), [identity])
                target.with_name(target.name + ".tmp").replace(target)
            elif encrypted:
                target.replace(target.with_name(target.name + ".age"))
            files.append(
                {
                    "name": output.name,
                    "sha256": output.sha256,
                    "size": size,
                    "encrypted": encrypted,
                    "decrypted": encrypted and identity is not None,
                }
            )
        saved[site] = {"state": run.result.state.value, "reason": run.result.reason, "files": files}
    missing = sorted(set(view.sites) - set(results))
    if args.json:
        print(json.dumps({"task": args.task, "sites": saved, "unfinished": missing}, indent=2))
    else:
        for site, info in saved.items():
            print(f"{site}: {info['state']}, {len(info['files'])} file(s) in {args.out / site}")
        for site in missing:
            print(f"{site}: no result yet")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    conn = connect(args)
    origin = conn.client.entry(0).event.event.ledger
    body = Cancel(task=EventId(args.task), reason=args.reason)
    event = new_event(body, ledger=origin, author=conn.key.key_id)
    appended = conn.client.post_event(SignedEvent.sign(event, conn.key))
    print(f"cancelled: entry {appended.index}")
    return 0
