"""The authorization rules: one pure function, ``apply(state, entry) -> state``.

The registry, every site and every auditor run this same function. It checks, in order: the chain
(index and prev hash), the ledger origin, the author's membership and role, the signature, and the
rule for the event's kind (DESIGN 3). It raises :class:`ChainError`, :class:`RuleViolation` or
:class:`SignatureError` and changes nothing on refusal; on success it updates ``state`` in place and
returns it.

| kind       | author                  | rule                                                    |
|------------|-------------------------|---------------------------------------------------------|
| consortium | a founding admin        | only at index 0; origin equals the event's ledger       |
| member     | admin                   | add: new name, unused key; revoke: an active member,    |
|            |                         | never the last active admin                             |
| member     | the member, or an admin | rekey: publish or rotate its age encryption key (and    |
|  (rekey)   |                         | FileService address)                                    |
| task       | researcher              | every named site is an active site member; parent and   |
|            |                         | inputs known; a recipient has an encryption key, and to |
|            |                         | deliver to it, it is a site with a FileService          |
| cancel     | task author or admin    | task known, not cancelled, not finished everywhere      |
| status     | site                    | task names the site, site has no result yet             |
| result     | site                    | task names the site; once per (task, site)              |
| transfer   | receiving site          | recipient is the author; sender is a member; task known |
| submission, review, review_policy: algorithm review, see :mod:`ledger.review_rules`     |

A revoked key signs nothing after the entry that revoked it. A task records whether the digest it
pins was approved by review when it was appended (``TaskRecord.approved_at_post``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from crypto import BadSignatureError, KeyId, PublicKey
from ledger import review_rules, witness_rules
from ledger.bodies import (
    Body,
    Cancel,
    Consortium,
    EventId,
    EventKind,
    Member,
    MemberAction,
    Result,
    ResultState,
    Role,
    Status,
    Task,
    Transfer,
)
from ledger.errors import ChainError, DuplicateResultError, RuleViolation, SignatureError
from ledger.events import Entry, EntryHash, SignedEvent
from ledger.state import MemberRecord, SiteProgress, State, TaskRecord


class Facts(NamedTuple):
    """What the rules read from an entry: a compact value, cheap to send between processes.

    ``task`` is the task a cancel, status, result or transfer is about; ``state`` a status's or
    result's state; ``sites``, ``parent`` and ``digest`` (the pinned image digest) a task's. The
    other kinds (consortium, member, transfer and the review kinds) carry their whole ``body``.
    """

    position: int  # the entry index
    prev: str
    hash: str
    event_id: EventId
    kind: EventKind
    ledger: str
    author: KeyId
    task: EventId | None = None
    state: str | None = None
    sites: tuple[str, ...] = ()
    parent: EventId | None = None
    recipient: str | None = None
    deliver: bool = False
    inputs: tuple[EventId, ...] = ()
    digest: str | None = None
    body: Body | None = None


SignatureCheck = Callable[[PublicKey], None]
"""Verify the entry's signature with the author's key; raise :class:`SignatureError`."""


def facts_of(entry: Entry) -> Facts:
    event = entry.event.event
    body = event.body
    common = (entry.index, entry.prev, entry.hash, event.id, event.kind, event.ledger, event.author)
    if isinstance(body, Status | Result):
        return Facts(*common, task=body.task, state=body.state.value)
    if isinstance(body, Task):
        return Facts(
            *common,
            sites=body.sites,
            parent=body.parent,
            recipient=body.recipient,
            deliver=body.deliver,
            inputs=body.inputs,
            digest=body.digest,
        )
    if isinstance(body, Cancel):
        return Facts(*common, task=body.task)
    return Facts(*common, body=body)


def check_event_signature(signed: SignedEvent, key: PublicKey) -> None:
    """Verify a posted event's signature with ``key`` before it has an entry index."""
    try:
        key.verify(signed.sig, signed.event.signing_bytes())
    except BadSignatureError as exc:
        raise SignatureError(
            f"event {signed.event.id[:16]}: signature does not verify for author {key.key_id[:16]}"
        ) from exc


def check_signature(entry: Entry, key: PublicKey) -> None:
    """Verify the event signature with ``key``; raise :class:`SignatureError` naming the entry."""
    try:
        key.verify(entry.event.sig, entry.event.event.signing_bytes())
    except BadSignatureError as exc:
        raise bad_signature(entry.index, key) from exc


def bad_signature(index: int, key: PublicKey) -> SignatureError:
    return SignatureError(f"entry {index}: signature does not verify for author {key.key_id[:16]}")


def apply(
    state: State, entry: Entry, *, signature_checked: bool = False, proposed: bool = False
) -> State:
    """Judge ``entry`` against ``state`` and, if allowed, fold it in.

    ``signature_checked=True`` is for callers (the appender) that have already verified the
    signature against the public key whose id is the event's ``author``; membership, role and
    revocation are still checked here. ``proposed=True`` is for the appender too: the entry does
    not exist unless it is allowed, so a refusal names the event (``task event: ...``), not an
    entry index that never was.
    """
    check = None if signature_checked else partial(check_signature, entry)
    return apply_facts(state, facts_of(entry), check, proposed=proposed)


def apply_facts(
    state: State, facts: Facts, check: SignatureCheck | None, *, proposed: bool = False
) -> State:
    """:func:`apply` on the facts of an entry; ``check`` verifies its signature (None when that
    was already done, by parallel replay for instance)."""
    where = f"{facts.kind} event" if proposed else f"entry {facts.position} ({facts.kind})"
    if facts.position != state.size:
        raise ChainError(f"{where}: expected index {state.size}, found {facts.position}")
    if facts.prev != state.head:
        raise ChainError(f"{where}: prev is {facts.prev[:16]}, expected {state.head[:16]}")

    if facts.position == 0:
        _genesis(state, facts, check)
    else:
        if facts.kind is EventKind.CONSORTIUM:
            raise RuleViolation(f"{where}: a consortium event is allowed only at index 0")
        if facts.ledger != state.origin:
            raise RuleViolation(
                f"{where}: event is for ledger {facts.ledger!r}, this ledger is {state.origin!r}"
            )
        author = state.member_by_key(facts.author)
        if author is None:
            raise RuleViolation(f"{where}: author {facts.author[:16]} is not a member")
        if not author.active:
            raise RuleViolation(
                f"{where}: author {author.name!r} was revoked at entry {author.revoked}"
            )
        if check is not None:
            check(author.public_key)
        _RULES[facts.kind](state, facts, author, where)

    state.size = facts.position + 1
    state.head = EntryHash(facts.hash)
    return state


def _genesis(state: State, facts: Facts, check: SignatureCheck | None) -> None:
    body = facts.body
    if not isinstance(body, Consortium):
        raise RuleViolation(
            f"entry 0: the first entry must be a consortium event, found {facts.kind}"
        )
    if body.origin != facts.ledger:
        raise RuleViolation(
            f"entry 0: consortium origin {body.origin!r} differs from event ledger {facts.ledger!r}"
        )
    members: dict[str, MemberRecord] = {}
    keys: dict[KeyId, str] = {}
    for spec in body.members:
        key = PublicKey.from_b64(spec.public_key)
        if spec.name in members:
            raise RuleViolation(f"entry 0: member name {spec.name!r} appears twice")
        if key.key_id in keys:
            raise RuleViolation(f"entry 0: key {key.key_id[:16]} is given to two members")
        members[spec.name] = MemberRecord(
            name=spec.name,
            role=spec.role,
            public_key=key,
            added=0,
            encryption_key=spec.encryption_key,
            file_service=spec.file_service,
            org=spec.org,
            witness_key=spec.witness_key,
        )
        keys[key.key_id] = spec.name
    founder = members.get(keys.get(facts.author, ""))
    if founder is None or founder.role is not Role.ADMIN:
        raise RuleViolation("entry 0: the consortium event must be signed by one of its admins")
    if check is not None:
        check(founder.public_key)
    state.origin = body.origin
    state.name = body.name
    state.log_key = body.log_key
    state.members = members
    state.keys = keys


def _require_role(author: MemberRecord, roles: tuple[Role, ...], where: str) -> None:
    if author.role not in roles:
        allowed = " or ".join(r.with_article() for r in roles)
        raise RuleViolation(
            f"{where}: {author.name!r} is {author.role.with_article()}, "
            f"only {allowed} may post this"
        )


def _member(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    body = facts.body
    assert isinstance(body, Member)
    if body.action is MemberAction.REKEY:
        _rekey(state, body, author, where, facts.position)
        return
    _require_role(author, (Role.ADMIN,), where)
    if body.action is MemberAction.ADD:
        key = PublicKey.from_b64(body.public_key)
        if body.name in state.members:
            raise RuleViolation(f"{where}: member name {body.name!r} is already taken")
        if key.key_id in state.keys:
            raise RuleViolation(f"{where}: key {key.key_id[:16]} already belongs to a member")
        state.members[body.name] = MemberRecord(
            name=body.name,
            role=body.role,
            public_key=key,
            added=facts.position,
            encryption_key=body.encryption_key,
            file_service=body.file_service,
            org=body.org,
            witness_key=body.witness_key,
        )
        state.keys[key.key_id] = body.name
        return
    target = state.members.get(body.name)
    if target is None or not target.active:
        raise RuleViolation(f"{where}: {body.name!r} is not an active member")
    if target.role is not body.role or target.public_key.b64() != body.public_key:
        raise RuleViolation(f"{where}: revoke names {body.name!r} with another role or key")
    if (
        target.role is Role.ADMIN
        and sum(1 for m in state.members.values() if m.active and m.role is Role.ADMIN) == 1
    ):
        raise RuleViolation(f"{where}: cannot revoke the last active admin")
    target.revoked = facts.position


def _rekey(state: State, body: Member, author: MemberRecord, where: str, position: int) -> None:
    """A member publishes or rotates its own encryption key (or an admin does it for them)."""
    if author.name != body.name and author.role is not Role.ADMIN:
        raise RuleViolation(f"{where}: only {body.name!r} itself or an admin may rekey it")
    target = state.members.get(body.name)
    if target is None or not target.active:
        raise RuleViolation(f"{where}: {body.name!r} is not an active member")
    if target.role is not body.role or target.public_key.b64() != body.public_key:
        raise RuleViolation(f"{where}: rekey names {body.name!r} with another role or key")
    if body.encryption_key is not None:
        target.encryption_key = body.encryption_key
    if body.witness_key is not None:
        target.witness_key = body.witness_key
    if body.file_service is not None:
        target.file_service = body.file_service
    target.changed = position


def _task(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    _require_role(author, (Role.RESEARCHER,), where)
    event_id = facts.event_id
    if event_id in state.tasks:
        raise RuleViolation(f"{where}: task {event_id[:16]} is already in the ledger")
    for site in facts.sites:
        member = state.members.get(site)
        if member is None or not member.active or member.role is not Role.SITE:
            raise RuleViolation(f"{where}: {site!r} is not an active site of this consortium")
    if facts.parent is not None and facts.parent not in state.tasks:
        raise RuleViolation(f"{where}: parent task {facts.parent[:16]} is not in the ledger")
    for earlier in facts.inputs:
        if earlier not in state.tasks:
            raise RuleViolation(f"{where}: input task {earlier[:16]} is not in the ledger")
    encrypt_for = author.encryption_key
    if facts.recipient is not None:
        recipient = state.members.get(facts.recipient)
        if recipient is None or not recipient.active:
            raise RuleViolation(f"{where}: recipient {facts.recipient!r} is not an active member")
        if recipient.encryption_key is None:
            raise RuleViolation(
                f"{where}: recipient {facts.recipient!r} has published no encryption key"
            )
        if facts.deliver and (recipient.role is not Role.SITE or recipient.file_service is None):
            raise RuleViolation(
                f"{where}: outputs can be delivered only to a site with a FileService; "
                f"{facts.recipient!r} has none"
            )
        encrypt_for = recipient.encryption_key
    state.tasks[event_id] = TaskRecord(
        event_id=event_id,
        index=facts.position,
        author=author.name,
        sites={site: SiteProgress() for site in facts.sites},
        parent=facts.parent,
        encrypt_for=encrypt_for,
        deliver_to=facts.recipient if facts.deliver else None,
        approved_at_post=review_rules.approved(state, facts.digest),
    )


def _known_task(state: State, task_id: EventId, where: str) -> TaskRecord:
    task = state.tasks.get(task_id)
    if task is None:
        raise RuleViolation(f"{where}: task {task_id[:16]} is not in the ledger")
    return task


def _cancel(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    assert facts.task is not None
    task = _known_task(state, facts.task, where)
    if author.name != task.author and author.role is not Role.ADMIN:
        raise RuleViolation(f"{where}: only the task's author or an admin may cancel it")
    if task.cancelled is not None:
        raise RuleViolation(f"{where}: task was already cancelled at entry {task.cancelled}")
    if task.finished:
        raise RuleViolation(f"{where}: task has finished at every site")
    task.cancelled = facts.position


def _site_progress(
    state: State, task_id: EventId, author: MemberRecord, where: str
) -> SiteProgress:
    _require_role(author, (Role.SITE,), where)
    task = _known_task(state, task_id, where)
    progress = task.sites.get(author.name)
    if progress is None:
        raise RuleViolation(f"{where}: task {task_id[:16]} is not addressed to {author.name!r}")
    if progress.finished:
        raise DuplicateResultError(
            f"{where}: {author.name!r} already posted a result for this task at entry "
            f"{progress.index}",
            index=progress.index,
        )
    return progress


def _status(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    assert facts.task is not None and facts.state is not None
    progress = _site_progress(state, facts.task, author, where)
    progress.state = facts.state
    progress.index = facts.position


def _result(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    assert facts.task is not None and facts.state is not None
    progress = _site_progress(state, facts.task, author, where)
    if facts.state == ResultState.CANCELLED and state.tasks[facts.task].cancelled is None:
        raise RuleViolation(f"{where}: result says cancelled but the task was never cancelled")
    progress.state = facts.state
    progress.index = facts.position
    progress.finished = True


def _transfer(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    body = facts.body
    assert isinstance(body, Transfer)
    _require_role(author, (Role.SITE,), where)
    if body.recipient != author.name:
        raise RuleViolation(f"{where}: only the receiving site {body.recipient!r} may record it")
    sender = state.members.get(body.sender)
    if sender is None or not sender.active:
        raise RuleViolation(f"{where}: sender {body.sender!r} is not an active member")
    _known_task(state, body.task, where)


_RULES = {
    EventKind.MEMBER: _member,
    EventKind.TASK: _task,
    EventKind.CANCEL: _cancel,
    EventKind.STATUS: _status,
    EventKind.RESULT: _result,
    EventKind.TRANSFER: _transfer,
    EventKind.SUBMISSION: review_rules.submission,
    EventKind.REVIEW: review_rules.review,
    EventKind.REVIEW_POLICY: review_rules.review_policy,
    EventKind.WITNESS_POLICY: witness_rules.witness_policy,
}
