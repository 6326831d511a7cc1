"""An auditor's whole-ledger check and report (what ``pht audit`` runs).

``audit`` replays every stored record with :func:`ledger.verify.verify_ledger` (hashes, chain,
signatures, rules, Merkle tree), checks the genesis and log key against pins if given, holds the
served checkpoint and the one the auditor saw before to the replayed tree through the trust core
(:mod:`ledger.trust`: a rollback, a fork, a history rewritten and re-signed with the same log key
are each caught and named there), and builds a report:
members over time, and for every task who asked, which image digest ran where, and the outcome;
then algorithm review (:mod:`ledger.review_audit`): each submission with its reviewers and their
organizations, and every run of an image that was not approved at the time.

Reading a data directory's log for it is the store's business
(:func:`ledger.store.readlog.read_log`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from crypto import PublicKey
from ledger.bodies import EventId
from ledger.checkpoint import Checkpoint
from ledger.cosignature import cosigned_by, parse_witness_key
from ledger.errors import (
    GenesisMismatchError,
    QuorumError,
    UntrustedLogError,
    VerificationError,
)
from ledger.events import Entry
from ledger.review_audit import ReviewAccount, SubmissionReport, UnreviewedRun
from ledger.trust import check_checkpoint, verify_note
from ledger.verify import Progress, VerifiedLedger, verify_chunks
from ledger.witness_policy import require_quorum
from ledger.witness_rules import policy_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberChange:
    index: int
    received: str
    action: str  # founded, add, revoke
    name: str
    role: str
    key_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteRun:
    state: str
    index: int | None = None
    image_digest: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    outputs: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskReport:
    event_id: str
    index: int
    received: str
    author: str
    image: str
    label: str | None
    parent: str | None
    cancelled: int | None
    sites: dict[str, SiteRun]
    cancel_reason: str | None = None  # the reason the cancel event gave, if any


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    origin: str
    name: str
    size: int
    root: str
    checkpoint_size: int | None
    members: list[MemberChange] = field(default_factory=list)
    tasks: list[TaskReport] = field(default_factory=list)
    policy: tuple[int, int] = (2, 2)  # the review policy in force: approvals, organizations
    submissions: list[SubmissionReport] = field(default_factory=list)
    unreviewed: list[UnreviewedRun] = field(default_factory=list)
    # For each checkpoint verified (the one served, the one remembered): its size and the
    # members whose witness cosignature on it verified (DESIGN 12).
    witnessed: list[tuple[int, list[str]]] = field(default_factory=list)
    witness_policy: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (built by hand: ``dataclasses.asdict`` deep-copies
        and is many times slower on a large ledger)."""
        return {
            "origin": self.origin,
            "name": self.name,
            "size": self.size,
            "root": self.root,
            "checkpoint_size": self.checkpoint_size,
            "members": [_fields(m) for m in self.members],
            "tasks": [
                {**_fields(t), "sites": {s: _fields(r) for s, r in t.sites.items()}}
                for t in self.tasks
            ],
            "review_policy": {"approvals": self.policy[0], "organizations": self.policy[1]},
            "submissions": [s.to_dict() for s in self.submissions],
            "unreviewed_runs": [_fields(u) for u in self.unreviewed],
            "witness_policy": self.witness_policy,
            "witnessed": [{"size": n, "cosigned_by": names} for n, names in self.witnessed],
        }


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def audit(
    chunks: Iterable[Sequence[bytes]],
    *,
    checkpoint: bytes | None = None,
    trusted: bytes | None = None,
    exact: bool = True,
    log_key: str | None = None,
    genesis: str | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> tuple[VerifiedLedger, AuditReport]:
    """Verify everything; return the verified ledger and its report.

    ``checkpoint`` is the note the registry serves (or a data directory stores) for this
    history, ``trusted`` the newest one this auditor verified on an earlier run. Both are held
    to the replayed tree through :mod:`ledger.trust`: ``exact`` when the entries were fetched up
    to the checkpoint's size, not when a data directory's log may have grown past its stored
    checkpoint.

    Raises :class:`VerificationError` naming the first bad entry, or the
    :class:`UntrustedLogError` that names the lie (a rollback, a fork, a rewritten history,
    another genesis), carrying both checkpoints.

    ``chunks`` are the entries' bytes in pages (as a registry serves them; ``[records]`` for a
    list in hand): with workers, early pages are verified while later ones are still fetched.
    A lie the fetch names while ``chunks`` is read (an entry bundle that is not the signed one)
    is raised with both checkpoints too.
    """
    try:
        verified, records = verify_chunks(chunks, workers=workers, progress=progress)
        if not records:
            raise VerificationError(None, "the ledger is empty")
        served, remembered = _hold(
            verified,
            records[0],
            checkpoint=checkpoint,
            trusted=trusted,
            exact=exact,
            log_key=log_key,
            genesis=genesis,
        )
    except UntrustedLogError as exc:
        exc.with_notes(trusted=trusted or b"", served=checkpoint or b"")
        raise
    report = build_report(records, verified, served or remembered)
    witnessed = _witnessed(verified, [(checkpoint, served), (trusted, remembered)])
    return verified, dataclasses.replace(
        report, witnessed=witnessed, witness_policy=verified.state.witness_policy
    )


def _witnessed(
    verified: VerifiedLedger, notes: list[tuple[bytes | None, Checkpoint | None]]
) -> list[tuple[int, list[str]]]:
    """Who cosigned each checkpoint; the served one must meet the witness policy's quorum.

    Raises :class:`VerificationError` when a policy is in force and the served checkpoint is
    not cosigned by its quorum (the auditor acts only on checkpoints that meet it)."""
    state = verified.state
    keys = {
        name: parse_witness_key(m.witness_key)
        for name, m in state.members.items()
        if m.witness_key is not None
    }
    out: list[tuple[int, list[str]]] = []
    for note, checkpoint in notes:
        if note is not None and checkpoint is not None:
            out.append((checkpoint.size, sorted(cosigned_by(note, checkpoint, keys))))
    policy = policy_of(state)
    served_note, served = notes[0]
    if policy is not None and served_note is not None and served is not None:
        try:
            require_quorum(served_note, served, policy)
        except QuorumError as exc:
            raise VerificationError(
                None, f"the checkpoint is not cosigned by the witness policy's quorum: {exc}"
            ) from exc
    return out


def _hold(
    verified: VerifiedLedger,
    genesis_record: bytes,
    *,
    checkpoint: bytes | None,
    trusted: bytes | None,
    exact: bool,
    log_key: str | None,
    genesis: str | None,
) -> tuple[Checkpoint | None, Checkpoint | None]:
    """The pins, then the served and the remembered checkpoints, held to the replayed tree."""
    state = verified.state
    first = Entry.from_canonical(genesis_record)
    if genesis is not None and first.hash != genesis:
        raise GenesisMismatchError(
            f"the genesis entry hash is {first.hash}, the auditor pins {genesis}", index=0
        )
    if log_key is not None and state.log_key != log_key:
        raise GenesisMismatchError(
            f"the genesis names log key {state.log_key}, the auditor pins {log_key}", index=0
        )
    served = remembered = None
    if checkpoint is not None:
        served = verify_note(checkpoint, log_key=state.log_key, origin=state.origin)
    if trusted is not None:
        remembered = verify_note(trusted, log_key=state.log_key, origin=state.origin)
    if not exact:
        # A data directory: its stored checkpoint is written at snapshots and may be older than
        # what this auditor verified before, so each is held to the replayed tree on its own.
        for checkpoint_ in (served, remembered):
            if checkpoint_ is not None:
                check_checkpoint(checkpoint_, verified.tree, exact=False)
        return served, remembered
    # Without a checkpoint for it, the replayed history itself is what is held to the one seen.
    held = served or Checkpoint(origin=state.origin, size=verified.size, root=verified.tree.root())
    check_checkpoint(held, verified.tree, trusted=remembered, exact=True)
    return served, remembered


def build_report(
    records: Sequence[bytes], verified: VerifiedLedger, checkpoint: Checkpoint | None
) -> AuditReport:
    """The human story of a verified ledger (records are trusted here: they were verified)."""
    state = verified.state
    names: dict[str, str] = {}
    task_ids = {record.index: event_id for event_id, record in state.tasks.items()}
    members: list[MemberChange] = []
    tasks: dict[str, TaskReport] = {}
    account = ReviewAccount(state)
    for index, data in enumerate(records):
        if b'"kind":"status"' in data:
            continue  # progress only; the final state comes from the result
        doc = json.loads(data)
        event = doc["event"]["event"]
        body = event["body"]
        kind = event["kind"]
        if kind == "consortium":
            for m in body["members"]:
                change = _member(index, doc["received"], "founded", m)
                names[change.key_id] = m["name"]
                members.append(change)
        elif kind == "member":
            change = _member(index, doc["received"], body["action"], body)
            names.setdefault(change.key_id, body["name"])
            members.append(change)
        elif kind == "task":
            event_id = task_ids[index]
            record = state.tasks[event_id]
            tasks[event_id] = TaskReport(
                event_id=event_id,
                index=index,
                received=doc["received"],
                author=names.get(event["author"], event["author"]),
                image=body["image"],
                label=body.get("label"),
                parent=body.get("parent"),
                cancelled=record.cancelled,
                sites={site: SiteRun(state="pending") for site in body["sites"]},
            )
        elif kind == "result":
            site = names.get(event["author"], event["author"])
            tasks[body["task"]].sites[site] = SiteRun(
                state=body["state"],
                index=index,
                image_digest=body.get("image_digest"),
                exit_code=body.get("exit_code"),
                reason=body.get("reason"),
                outputs=len(body["outputs"]),
            )
        elif kind == "cancel":
            cancelled = tasks[body["task"]]
            if cancelled.cancelled == index:  # the one cancellation the rules allowed
                tasks[body["task"]] = replace(cancelled, cancel_reason=body.get("reason"))
        elif kind == "review":
            account.note(index, body["note"])
    for report in tasks.values():
        for site, run in report.sites.items():
            progress = state.tasks[EventId(report.event_id)].sites[site]
            if run.state == "pending" and progress.state != "pending":
                report.sites[site] = SiteRun(state=progress.state, index=progress.index)
    runs = (
        (t.event_id, t.index, t.image, site, run.index, run.state, run.image_digest)
        for t in tasks.values()
        for site, run in t.sites.items()
        if run.index is not None and run.state not in ("pending", "accepted", "started")
    )
    return AuditReport(
        origin=state.origin,
        name=state.name,
        size=verified.size,
        root=verified.tree.root().hex(),
        checkpoint_size=None if checkpoint is None else checkpoint.size,
        members=members,
        tasks=list(tasks.values()),
        policy=(state.policy.approvals, state.policy.organizations),
        submissions=account.submissions(),
        unreviewed=account.unreviewed_runs(runs),
    )


def _member(index: int, received: str, action: str, spec: dict[str, Any]) -> MemberChange:
    return MemberChange(
        index=index,
        received=received,
        action=action,
        name=spec["name"],
        role=spec["role"],
        key_id=PublicKey.from_b64(spec["public_key"]).key_id,
    )
