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
| task       | researcher              | every named site is an active site member; parent known |
| cancel     | task author or admin    | task known, not cancelled, not finished everywhere      |
| status     | site                    | task names the site, site has no result yet             |
| result     | site                    | task names the site; once per (task, site)              |
| transfer   | receiving site          | recipient is the author; sender is a member; task known |

A revoked key signs nothing after the entry that revoked it.
"""

from __future__ import annotations

from crypto import BadSignatureError, KeyId, PublicKey
from ledger.bodies import (
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
from ledger.errors import ChainError, RuleViolation, SignatureError
from ledger.events import Entry
from ledger.state import MemberRecord, SiteProgress, State, TaskRecord


def check_signature(entry: Entry, key: PublicKey) -> None:
    """Verify the event signature with ``key``; raise :class:`SignatureError` naming the entry."""
    try:
        key.verify(entry.event.sig, entry.event.event.signing_bytes())
    except BadSignatureError as exc:
        raise SignatureError(
            f"entry {entry.index}: signature does not verify for author {key.key_id[:16]}"
        ) from exc


def apply(state: State, entry: Entry, *, signature_checked: bool = False) -> State:
    """Judge ``entry`` against ``state`` and, if allowed, fold it in.

    ``signature_checked=True`` is for callers (parallel replay) that have already verified the
    signature against the public key whose id is the event's ``author``; membership, role and
    revocation are still checked here.
    """
    event = entry.event.event
    where = f"entry {entry.index} ({event.kind})"
    if entry.index != state.size:
        raise ChainError(f"{where}: expected index {state.size}, found {entry.index}")
    if entry.prev != state.head:
        raise ChainError(f"{where}: prev is {entry.prev[:16]}, expected {state.head[:16]}")

    if entry.index == 0:
        _genesis(state, entry, signature_checked)
    else:
        if event.kind is EventKind.CONSORTIUM:
            raise RuleViolation(f"{where}: a consortium event is allowed only at index 0")
        if event.ledger != state.origin:
            raise RuleViolation(
                f"{where}: event is for ledger {event.ledger!r}, this ledger is {state.origin!r}"
            )
        author = state.member_by_key(event.author)
        if author is None:
            raise RuleViolation(f"{where}: author {event.author[:16]} is not a member")
        if not author.active:
            raise RuleViolation(
                f"{where}: author {author.name!r} was revoked at entry {author.revoked}"
            )
        if not signature_checked:
            check_signature(entry, author.public_key)
        _RULES[event.kind](state, entry, author, where)

    state.size = entry.index + 1
    state.head = entry.hash
    return state


def _genesis(state: State, entry: Entry, signature_checked: bool) -> None:
    event = entry.event.event
    body = event.body
    if not isinstance(body, Consortium):
        raise RuleViolation(
            f"entry 0: the first entry must be a consortium event, found {event.kind}"
        )
    if body.origin != event.ledger:
        raise RuleViolation(
            f"entry 0: consortium origin {body.origin!r} differs from event ledger {event.ledger!r}"
        )
    members: dict[str, MemberRecord] = {}
    keys: dict[KeyId, str] = {}
    for spec in body.members:
        key = PublicKey.from_b64(spec.public_key)
        if spec.name in members:
            raise RuleViolation(f"entry 0: member name {spec.name!r} appears twice")
        if key.key_id in keys:
            raise RuleViolation(f"entry 0: key {key.key_id[:16]} is given to two members")
        members[spec.name] = MemberRecord(name=spec.name, role=spec.role, public_key=key, added=0)
        keys[key.key_id] = spec.name
    founder = members.get(keys.get(event.author, ""))
    if founder is None or founder.role is not Role.ADMIN:
        raise RuleViolation("entry 0: the consortium event must be signed by one of its admins")
    if not signature_checked:
        check_signature(entry, founder.public_key)
    state.origin = body.origin
    state.name = body.name
    state.log_key = body.log_key
    state.members = members
    state.keys = keys


def _require_role(author: MemberRecord, roles: tuple[Role, ...], where: str) -> None:
    if author.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise RuleViolation(
            f"{where}: {author.name!r} is a {author.role}, only {allowed} may post this"
        )


def _member(state: State, entry: Entry, author: MemberRecord, where: str) -> None:
    body = entry.event.event.body
    assert isinstance(body, Member)
    _require_role(author, (Role.ADMIN,), where)
    if body.action is MemberAction.ADD:
        key = PublicKey.from_b64(body.public_key)
        if body.name in state.members:
            raise RuleViolation(f"{where}: member name {body.name!r} is already taken")
        if key.key_id in state.keys:
            raise RuleViolation(f"{where}: key {key.key_id[:16]} already belongs to a member")
        state.members[body.name] = MemberRecord(
            name=body.name, role=body.role, public_key=key, added=entry.index
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
    target.revoked = entry.index


def _task(state: State, entry: Entry, author: MemberRecord, where: str) -> None:
    body = entry.event.event.body
    assert isinstance(body, Task)
    _require_role(author, (Role.RESEARCHER,), where)
    event_id = entry.event.event.id
    if event_id in state.tasks:
        raise RuleViolation(f"{where}: task {event_id[:16]} is already in the ledger")
    for site in body.sites:
        member = state.members.get(site)
        if member is None or not member.active or member.role is not Role.SITE:
            raise RuleViolation(f"{where}: {site!r} is not an active site of this consortium")
    if body.parent is not None and body.parent not in state.tasks:
        raise RuleViolation(f"{where}: parent task {body.parent[:16]} is not in the ledger")
    state.tasks[event_id] = TaskRecord(
        event_id=event_id,
        index=entry.index,
        author=author.name,
        sites={site: SiteProgress() for site in body.sites},
        parent=body.parent,
    )


def _known_task(state: State, task_id: EventId, where: str) -> TaskRecord:
    task = state.tasks.get(task_id)
    if task is None:
        raise RuleViolation(f"{where}: task {task_id[:16]} is not in the ledger")
    return task


def _cancel(state: State, entry: Entry, author: MemberRecord, where: str) -> None:
    body = entry.event.event.body
    assert isinstance(body, Cancel)
    task = _known_task(state, body.task, where)
    if author.name != task.author and author.role is not Role.ADMIN:
        raise RuleViolation(f"{where}: only the task's author or an admin may cancel it")
    if task.cancelled is not None:
        raise RuleViolation(f"{where}: task was already cancelled at entry {task.cancelled}")
    if task.finished:
        raise RuleViolation(f"{where}: task has finished at every site")
    task.cancelled = entry.index


def _site_progress(
    state: State, task_id: EventId, author: MemberRecord, where: str
) -> SiteProgress:
    _require_role(author, (Role.SITE,), where)
    task = _known_task(state, task_id, where)
    progress = task.sites.get(author.name)
    if progress is None:
        raise RuleViolation(f"{where}: task {task_id[:16]} is not addressed to {author.name!r}")
    if progress.finished:
        raise RuleViolation(
            f"{where}: {author.name!r} already posted a result for this task at entry "
            f"{progress.index}"
        )
    return progress


def _status(state: State, entry: Entry, author: MemberRecord, where: str) -> None:
    body = entry.event.event.body
    assert isinstance(body, Status)
    progress = _site_progress(state, body.task, author, where)
    progress.state = body.state.value
    progress.index = entry.index


def _result(state: State, entry: Entry, author: MemberRecord, where: str) -> None:
    body = entry.event.event.body
    assert isinstance(body, Result)
    progress = _site_progress(state, body.task, author, where)
    if body.state is ResultState.CANCELLED and state.tasks[body.task].cancelled is None:
        raise RuleViolation(f"{where}: result says cancelled but the task was never cancelled")
    progress.state = body.state.value
    progress.index = entry.index
    progress.finished = True


def _transfer(state: State, entry: Entry, author: MemberRecord, where: str) -> None:
    body = entry.event.event.body
    assert isinstance(body, Transfer)
    _require_role(author, (Role.SITE,), where)
    if body.recipient != author.name:
        raise RuleViolation(f"{where}: only the receiving site {body.recipient!r} may record it")
    if body.sender not in state.members:
        raise RuleViolation(f"{where}: sender {body.sender!r} is not a member")
    _known_task(state, body.task, where)


_RULES = {
    EventKind.MEMBER: _member,
    EventKind.TASK: _task,
    EventKind.CANCEL: _cancel,
    EventKind.STATUS: _status,
    EventKind.RESULT: _result,
    EventKind.TRANSFER: _transfer,
}
