"""``pht image submit|review|list|show``: algorithm review (DESIGN 11).

    pht image submit REF --name N --version V --source URL [--description TEXT]
                     [--config-schema FILE] [--pin-digest]
    pht image review SUBMISSION (--approve | --reject | --revoke) --note TEXT
    pht image list [--json]
    pht image show (SUBMISSION | DIGEST | REF) [--json]

``submit`` (a researcher) offers an image for review; it must be pinned by digest
(``name@sha256:...``), or ``--pin-digest`` asks the image registry for the current one, as
``pht task post --pin-digest`` does. ``review`` (a reviewer) approves, rejects or revokes a
submission, named by its event id, its digest or a pinned reference. ``list`` and ``show`` say
how each submitted digest stands under the review policy in force, with its reviewers and their
organizations: read from this command's own verified replay of the ledger (every entry checked
against the registry's signed checkpoint), never from the registry's word. A site that requires
review runs a task only if its digest was approved when the task was appended.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from api.client.registry import Client
from cli.errors import CliError
from cli.profile import add_connection_arguments, connect
from cli.task import pin_digest
from ledger.bodies import Decision
from ledger.canonical import parse_json
from ledger.fields import HEX64
from ledger.kinds import DIGEST
from ledger.reference import parse_reference
from ledger.review_state import ReviewSnapshot, Verdict
from ledger.view import View


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("image", help="submit, review and list reviewed images")
    sub = parser.add_subparsers(dest="image_command", metavar="ACTION", required=True)

    submit = sub.add_parser("submit", help="submit an image pinned by digest for review")
    submit.add_argument("image", help="name@sha256:... (or a tag with --pin-digest)")
    submit.add_argument("--name", required=True, help="the algorithm's name")
    submit.add_argument("--version", required=True, help="its version")
    submit.add_argument("--source", required=True, help="http(s) URL of its source")
    submit.add_argument("--description", default="", help="what it computes, what it returns")
    submit.add_argument("--config-schema", type=Path, help="JSON Schema of its task configs")
    submit.add_argument("--pin-digest", action="store_true", help="pin the image's current digest")
    submit.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_connection_arguments(submit)
    submit.set_defaults(run=_submit)

    review = sub.add_parser("review", help="approve, reject or revoke a submission (reviewers)")
    review.add_argument("submission", help="its event id, its digest or a pinned reference")
    decision = review.add_mutually_exclusive_group(required=True)
    for choice in Decision:
        decision.add_argument(
            f"--{choice.value}", dest="decision", action="store_const", const=choice
        )
    review.add_argument("--note", required=True, help="why (kept in the ledger)")
    review.add_argument("--json", action="store_true", help="print the outcome as JSON")
    add_connection_arguments(review)
    review.set_defaults(run=_review)

    listing = sub.add_parser("list", help="every submission and how it stands")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    add_connection_arguments(listing)
    listing.set_defaults(run=_list)

    show = sub.add_parser("show", help="one submission, its reviews and how it stands")
    show.add_argument("submission", help="its event id, its digest or a pinned reference")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    add_connection_arguments(show)
    show.set_defaults(run=_show)


def _submit(args: argparse.Namespace) -> int:
    image = args.image
    if "@" not in image:
        if not args.pin_digest:
            raise CliError(
                f"{image!r} is not pinned by digest: name it as name@sha256:<digest>, or pass "
                "--pin-digest to pin the digest the image registry serves now"
            )
        image = pin_digest(image)
    schema = None
    if args.config_schema is not None:
        try:
            schema = parse_json(args.config_schema.read_bytes(), what=str(args.config_schema))
        except OSError as exc:
            raise CliError(f"cannot read {args.config_schema}: {exc.strerror}") from exc
        if not isinstance(schema, dict):
            raise CliError(f"{args.config_schema}: a JSON Schema is an object")
    submission = (
        connect(args)
        .analyst()
        .submit(
            image,
            name=args.name,
            version=args.version,
            description=args.description,
            source=args.source,
            config_schema=schema,
        )
    )
    print(json.dumps({"submission": submission, "image": image}) if args.json else submission)
    return 0


def _review(args: argparse.Namespace) -> int:
    analyst = connect(args).analyst()
    target = args.submission
    if not HEX64.fullmatch(target):
        target = _find(analyst.ledger_view(), target).submission
    event = analyst.review(target, args.decision, args.note)
    if args.json:
        print(json.dumps({"review": event, "submission": target, "decision": args.decision.value}))
    else:
        print(f"{args.decision.value}: {event}")
    return 0


def _find(view: View, text: str) -> ReviewSnapshot:
    """The submitted digest named by an event id, a digest or a pinned reference."""
    if HEX64.fullmatch(text):
        for record in view.reviews.values():
            if record.submission == text:
                return record
        raise CliError(f"no submission {text[:16]} in the ledger")
    digest = text if DIGEST.fullmatch(text) else parse_reference(text).digest
    if digest is None:
        raise CliError(f"{text!r} names no digest: give a submission id, a digest or name@sha256:")
    found = view.reviews.get(digest)
    if found is None:
        raise CliError(f"digest {digest} was never submitted for review")
    return found


def _verdict(view: View, verdict: Verdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    member = view.members.get(verdict.reviewer)
    return {
        "reviewer": verdict.reviewer,
        "org": verdict.org,
        "entry": verdict.entry,
        "decision": verdict.decision,
        "reviewer_revoked_at": member.revoked if member is not None else None,
    }


def describe(view: View, record: ReviewSnapshot) -> dict[str, Any]:
    """One submission as JSON-ready values, with how it stands now."""
    standing = view.standing(record.digest)
    state = "approved" if standing.approved else "pending"
    if standing.blocked is not None:
        state = "rejected" if standing.blocked.decision == Decision.REJECT else "revoked"
    return {
        "submission": record.submission,
        "entry": record.index,
        "digest": record.digest,
        "image": record.image,
        "name": record.name,
        "version": record.version,
        "submitter": record.submitter,
        "org": record.org,
        "state": state,
        "approvals": [_verdict(view, v) for v in record.approvals.values()],
        "rejected": _verdict(view, record.rejected),
        "revoked": _verdict(view, record.revoked),
        "standing": standing.describe(),
    }


def _policy(view: View) -> str:
    where = "default" if view.policy.index is None else f"set at entry {view.policy.index}"
    return (
        f"review policy: {view.policy.approvals} approvals from {view.policy.organizations} "
        f"organizations ({where})"
    )


def _list(args: argparse.Namespace) -> int:
    view = connect(args).analyst().ledger_view()
    items = [describe(view, record) for record in view.reviews.values()]
    if args.json:
        print(json.dumps({"policy": view.policy.to_list()[:2], "submissions": items}, indent=2))
        return 0
    print(_policy(view))
    for item in items:
        orgs = len({a["org"] for a in item["approvals"]})
        print(
            f"{item['submission'][:12]}  {item['state']:<9} {len(item['approvals'])} approvals "
            f"({orgs} orgs)  {item['name']} {item['version']}  {item['image']}  "
            f"by {item['submitter']} ({item['org']})"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    conn = connect(args)
    view = conn.analyst().ledger_view()
    item = describe(view, _find(view, args.submission))
    notes = _notes(conn.client, view, item)
    if args.json:
        print(json.dumps({**item, "notes": notes}, indent=2))
        return 0
    print(f"{item['name']} {item['version']}: {item['image']}")
    print(f"submitted at entry {item['entry']} by {item['submitter']} ({item['org']})")
    print(_policy(view))
    print(f"standing: {item['standing']}")
    verdicts = [*item["approvals"], item["rejected"], item["revoked"]]
    for verdict in filter(None, verdicts):
        revoked = verdict["reviewer_revoked_at"]
        later = f" (reviewer revoked at entry {revoked})" if revoked is not None else ""
        note = notes.get(str(verdict["entry"]), "")
        print(
            f"  entry {verdict['entry']:>6}  {verdict['decision']:<8} {verdict['reviewer']} "
            f"({verdict['org']}){later}: {note}"
        )
    return 0


def _notes(client: Client, view: View, item: dict[str, Any]) -> dict[str, str]:
    """Each verdict's note, read from its entry (checked against the verified leaf)."""
    notes: dict[str, str] = {}
    verdicts = [*item["approvals"], item["rejected"], item["revoked"]]
    for verdict in filter(None, verdicts):
        entry = client.entry(verdict["entry"])
        if entry.leaf_hash != view.leaf(entry.index):
            raise CliError(f"entry {entry.index} differs from the verified one")
        notes[str(entry.index)] = getattr(entry.event.event.body, "note", "")
    return notes
