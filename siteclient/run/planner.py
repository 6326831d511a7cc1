"""The planner: what this site must do about a verified view. Pure: (view, site) -> actions.

The agent (:mod:`siteclient.run.agent`) carries the actions out; it never reads the ledger any
other way. Every decision reads the immutable view the trust core published, so it is the same
whichever thread asks and whenever.

| entry in ``view.fresh``                      | action                                      |
|----------------------------------------------|---------------------------------------------|
| a task naming this site, not finished here   | :class:`Run` it                             |
| a cancel                                     | :class:`StopTask` (if it runs here)         |
| a result signed by this site                 | :class:`Cleanup` its work folder            |

After a (re)start, :func:`resume` lists every task naming this site that has no result from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto import KeyId
from ledger.bodies import Cancel, EventId, Result, Task
from ledger.events import Entry
from ledger.state import PENDING
from ledger.view import View


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """Where a task's outputs go: encrypted for ``encrypt_for`` (an age recipient) and, when
    delivered to a site's FileService instead of the registry, that site and its URL."""

    encrypt_for: str | None = None
    deliver_to: str | None = None
    deliver_url: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    entry: Entry
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class StopTask:
    task: EventId


@dataclass(frozen=True, slots=True)
class Cleanup:
    task: EventId


@dataclass(frozen=True, slots=True)
class Resume:
    task: EventId
    index: int
    cancelled: bool


Action = Run | StopTask | Cleanup


def plan(view: View, *, site: str, key_id: KeyId) -> list[Action]:
    """The actions for the entries ``view`` newly covers, in ledger order."""
    actions: list[Action] = []
    for entry in view.fresh:
        body = entry.event.event.body
        if isinstance(body, Task) and site in body.sites:
            if not finished_here(view, entry.event.event.id, site):
                actions.append(Run(entry, delivery(view, entry.event.event.id)))
        elif isinstance(body, Result) and entry.event.event.author == key_id:
            actions.append(Cleanup(body.task))
        elif isinstance(body, Cancel):
            actions.append(StopTask(body.task))
    return actions


def resume(view: View, *, site: str) -> list[Resume]:
    """Every task naming ``site`` that has no result from it yet, oldest first."""
    out = []
    for task_id, record in view.tasks.items():
        progress = record.sites.get(site)
        if progress is None or progress.finished:
            continue
        out.append(Resume(task_id, record.index, record.cancelled is not None))
    return sorted(out, key=lambda r: r.index)


def finished_here(view: View, task: EventId, site: str) -> bool:
    record = view.tasks.get(task)
    progress = record.sites.get(site) if record else None
    return progress is not None and progress.finished


def has_status(view: View, task: EventId, site: str) -> bool:
    """The site already said something about ``task`` (accepted, started, ...)."""
    record = view.tasks.get(task)
    progress = record.sites.get(site) if record else None
    return progress is not None and progress.state != PENDING


def cancelled(view: View, task: EventId) -> bool:
    record = view.tasks.get(task)
    return record is not None and record.cancelled is not None


def delivery(view: View, task: EventId) -> Delivery:
    record = view.tasks.get(task)
    if record is None:
        return Delivery()
    recipient = view.members.get(record.deliver_to) if record.deliver_to else None
    return Delivery(
        encrypt_for=record.encrypt_for,
        deliver_to=record.deliver_to,
        deliver_url=recipient.file_service if recipient else None,
    )
