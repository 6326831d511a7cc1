"""Listings of the replayed state: tasks (newest first, filtered, paged) and members.

Pure: the caller hands in the tasks (newest first) or members it holds, and a function that
returns the entry at an index. The registry (``GET /v1/tasks``, ``GET /v1/members``) calls it over
its own state with entries read from its store; the CLI (``pht task list``, ``pht member list``)
calls it over its *verified* replay (:class:`ledger.view.View`) with entries it fetched and
checked against the view's leaf hashes, so both print the same thing from the same rules.

Every listed ``index`` is an entry index a reader can prove included (an inclusion proof to a
checkpoint of at least ``size``): the task's own entry, the entry that set each site's state, the
cancel entry, and for a member the latest entry about it (its ``member`` add, rekey or revoke).

Decisions:

- ``created`` is the registry's receipt time of the task's entry (``received``, covered by the
  entry hash), not the author's claimed ``time``. Receipt times grow with the index, so a
  ``since`` listing stops at the first older task.
- ``state`` matches a task when any site is in that state (with ``site``: when that site is);
  ``cancelled`` also matches every cancelled task, ``finished``/``unfinished`` whether every site
  has a final result.
- A site's ``reason`` is read for the states that carry one (``interrupted`` and the final states
  other than ``completed``); it is null otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from crypto import PublicKey
from ledger.bodies import Cancel, Result, Role, Status, Task
from ledger.errors import FormatError
from ledger.events import Entry
from ledger.state import FINAL_STATES, PENDING, STATUS_STATES

FINISHED = "finished"
UNFINISHED = "unfinished"
CANCELLED = "cancelled"
STATES = frozenset({PENDING, *STATUS_STATES, *FINAL_STATES, FINISHED, UNFINISHED})
_WITH_REASON = frozenset({*FINAL_STATES, "interrupted"}) - {"completed"}
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Progress(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def index(self) -> int | None: ...
    @property
    def finished(self) -> bool: ...


class TaskLike(Protocol):
    """A task of the replayed state (:class:`ledger.state.TaskRecord` or a view's snapshot)."""

    @property
    def event_id(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def author(self) -> str: ...
    @property
    def sites(self) -> Mapping[str, Progress]: ...
    @property
    def cancelled(self) -> int | None: ...


class MemberLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> Role: ...
    @property
    def public_key(self) -> PublicKey: ...
    @property
    def added(self) -> int: ...
    @property
    def revoked(self) -> int | None: ...
    @property
    def changed(self) -> int | None: ...
    @property
    def encryption_key(self) -> str | None: ...
    @property
    def file_service(self) -> str | None: ...
    @property
    def org(self) -> str | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskQuery:
    """What to list: filters, then at most ``limit`` tasks older than index ``after``."""

    author: str | None = None
    state: str | None = None
    site: str | None = None
    label: str | None = None
    since: str | None = None  # RFC 3339 UTC: tasks the registry received at or after it
    after: int | None = None
    limit: int = DEFAULT_LIMIT
    # A regular expression searched in the image reference. Only the CLI sets it, over its own
    # replay: the registry takes no regular expressions from requests.
    image: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise FormatError(
                f"state: expected one of {', '.join(sorted(STATES))}, found {self.state[:40]!r}"
            )
        if not 1 <= self.limit <= MAX_LIMIT:
            raise FormatError(f"limit: expected 1..{MAX_LIMIT}, found {self.limit}")
        if self.since is not None:
            _moment(self.since, "since")

    def cheap_match(self, task: TaskLike) -> bool:
        """The filters the state alone answers (no entry needed)."""
        if self.after is not None and task.index >= self.after:
            return False
        if self.author is not None and task.author != self.author:
            return False
        if self.site is not None and self.site not in task.sites:
            return False
        if self.state is None:
            return True
        if self.state == CANCELLED and task.cancelled is not None:
            return True
        if self.state in (FINISHED, UNFINISHED):
            done = all(p.finished for p in task.sites.values())
            return done == (self.state == FINISHED)
        if self.site is not None:
            return task.sites[self.site].state == self.state
        return any(p.state == self.state for p in task.sites.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteLine:
    state: str
    index: int | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "index": self.index, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancelled:
    index: int
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskLine:
    """One listed task, as ``GET /v1/tasks`` answers it."""

    task: str
    index: int
    author: str
    image: str
    label: str | None
    parent: str | None
    created: str
    sites: Mapping[str, SiteLine]
    cancelled: Cancelled | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "index": self.index,
            "author": self.author,
            "image": self.image,
            "label": self.label,
            "parent": self.parent,
            "created": self.created,
            "sites": {name: line.to_dict() for name, line in self.sites.items()},
            "cancelled": None if self.cancelled is None else self.cancelled.to_dict(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPage:
    """``tasks`` newest first; ``next`` is the ``after`` of the next page (None: no more)."""

    size: int
    tasks: tuple[TaskLine, ...]
    next: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "tasks": [line.to_dict() for line in self.tasks],
            "next": self.next,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberLine:
    name: str
    role: str
    key_id: str
    public_key: str
    encryption_key: str | None
    organization: str | None
    file_service: str | None
    index: int
    revoked: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "encryption_key": self.encryption_key,
            "organization": self.organization,
            "file_service": self.file_service,
            "index": self.index,
            "revoked": self.revoked,
        }


def list_tasks(
    newest_first: Iterable[TaskLike],
    entry_at: Callable[[int], Entry],
    query: TaskQuery,
    *,
    size: int,
) -> TaskPage:
    """The page of tasks ``query`` selects from ``newest_first`` (which must be in descending
    index order); ``entry_at`` returns the entry at an index (the caller vouches for it)."""
    since = None if query.since is None else _moment(query.since, "since")
    lines: list[TaskLine] = []
    for task in newest_first:
        if not query.cheap_match(task):
            continue
        if len(lines) == query.limit:
            return TaskPage(size=size, tasks=tuple(lines), next=lines[-1].index)
        entry = entry_at(task.index)
        body = entry.event.event.body
        if not isinstance(body, Task):
            raise FormatError(f"entry {task.index} is not task {task.event_id[:16]}")
        if since is not None and _moment(entry.received, "received") < since:
            break
        if query.label is not None and body.label != query.label:
            continue
        if query.image is not None and not query.image.search(body.image):
            continue
        lines.append(_line(task, entry, body, entry_at))
    return TaskPage(size=size, tasks=tuple(lines), next=None)


def _line(task: TaskLike, entry: Entry, body: Task, entry_at: Callable[[int], Entry]) -> TaskLine:
    sites = {
        name: SiteLine(
            state=p.state,
            index=p.index,
            reason=_reason(entry_at, p.index) if p.state in _WITH_REASON else None,
        )
        for name, p in task.sites.items()
    }
    cancelled = None
    if task.cancelled is not None:
        cancelled = Cancelled(index=task.cancelled, reason=_reason(entry_at, task.cancelled))
    return TaskLine(
        task=task.event_id,
        index=task.index,
        author=task.author,
        image=body.image,
        label=body.label,
        parent=body.parent,
        created=entry.received,
        sites=sites,
        cancelled=cancelled,
    )


def _reason(entry_at: Callable[[int], Entry], index: int | None) -> str | None:
    if index is None:
        return None
    body = entry_at(index).event.event.body
    return body.reason if isinstance(body, Status | Result | Cancel) else None


def list_members(members: Iterable[MemberLike]) -> tuple[MemberLine, ...]:
    """Every member, current and revoked, in the order they joined."""
    return tuple(
        MemberLine(
            name=m.name,
            role=m.role.value,
            key_id=m.public_key.key_id,
            public_key=m.public_key.b64(),
            encryption_key=m.encryption_key,
            organization=m.org,
            file_service=m.file_service,
            index=max(m.added, m.changed or 0, m.revoked or 0),
            revoked=m.revoked,
        )
        for m in sorted(members, key=lambda m: m.added)
    )


def _moment(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise FormatError(
            f"{where}: expected an RFC 3339 time like 2026-11-25T17:00:00Z, found {text[:40]!r}"
        ) from exc
    if moment.tzinfo is None:
        raise FormatError(f"{where}: give a time zone (2026-11-25T17:00:00Z), found {text[:40]!r}")
    return moment
