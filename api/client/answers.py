"""The registry's JSON answers, read into values: appended events, pages, task views, proofs.

Entries are parsed strictly and their canonical bytes recomputed (``Entry.from_dict``). What is
*trusted* is decided by the caller (the follower verifies checkpoints, proofs and rules): these
readers only guarantee well-formed values, and raise :class:`ProtocolError` for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.errors import ApiError, ProtocolError
from ledger.canonical import parse_json
from ledger.errors import LedgerError
from ledger.events import Entry


@dataclass(frozen=True, slots=True, kw_only=True)
class Appended:
    """Where a posted event sits; ``created`` is False when it was already in the ledger."""

    index: int
    event_id: str
    hash: str
    received: str
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """Entries ``[start, next)``; ``size`` is the ledger's size when the registry answered.
    ``retry_after`` is set when the registry had no long-poll slot free (come back later)."""

    entries: tuple[Entry, ...]
    next: int
    size: int
    retry_after: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteState:
    state: str
    index: int | None
    finished: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskView:
    """The registry's read model of a task (a convenience: followers replay the ledger)."""

    task: Entry
    sites: dict[str, SiteState]
    cancelled: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskProgress:
    """What :meth:`Analyst.wait` reports on each change: the task id, each site's state and the
    cancellation entry, if any. Its ``repr`` is one short line (``progress=print`` is readable)."""

    task_id: str
    sites: Mapping[str, SiteState]
    cancelled: int | None

    @classmethod
    def of(cls, view: TaskView) -> TaskProgress:
        return cls(
            task_id=view.task.event.event.id, sites=dict(view.sites), cancelled=view.cancelled
        )

    def states(self) -> dict[str, str]:
        return {site: s.state for site, s in sorted(self.sites.items())}

    def __repr__(self) -> str:
        states = ", ".join(f"{site} {state}" for site, state in self.states().items())
        cancelled = "" if self.cancelled is None else f" (cancelled at entry {self.cancelled})"
        return f"<task {self.task_id[:12]}: {states}{cancelled}>"

    __str__ = __repr__


def json_answer(content: bytes, what: str) -> Any:
    """Strictly parsed JSON of an answer; ``what`` names it in the error."""
    try:
        return parse_json(content, what=what)
    except LedgerError as exc:
        raise ProtocolError(str(exc)) from exc


def appended(value: Any, *, created: bool) -> Appended:
    return Appended(
        index=field_int(value, "index"),
        event_id=field_str(value, "event_id"),
        hash=field_str(value, "hash"),
        received=field_str(value, "received"),
        created=created,
    )


def page(value: Any, start: int, retry_after: float | None) -> Page:
    """The page of entries from ``start`` that ``value`` holds, its ``next`` checked."""
    raw = value.get("entries") if isinstance(value, dict) else None
    if not isinstance(raw, list):
        raise ProtocolError("an entries page must hold an 'entries' array")
    entries = tuple(entry_at(item, start + n) for n, item in enumerate(raw))
    result = Page(
        entries=entries,
        next=field_int(value, "next"),
        size=field_int(value, "size"),
        retry_after=retry_after,
    )
    if result.next != start + len(entries):
        raise ProtocolError(
            f"page from {start} with {len(entries)} entries says next={result.next}"
        )
    return result


def task_view(value: Any) -> TaskView:
    if not isinstance(value, dict):
        raise ProtocolError("a task view must be a JSON object")
    sites_value = value.get("sites")
    if not isinstance(sites_value, dict):
        raise ProtocolError("a task view must hold a 'sites' object")
    sites = {}
    for name, site in sites_value.items():
        index = site.get("index") if isinstance(site, dict) else None
        if not isinstance(site, dict) or not isinstance(site.get("state"), str):
            raise ProtocolError(f"task view: malformed state of site {name!r}")
        sites[name] = SiteState(
            state=site["state"],
            index=index if isinstance(index, int) else None,
            finished=site.get("finished") is True,
        )
    cancelled = value.get("cancelled")
    return TaskView(
        task=entry_at(value.get("task"), None),
        sites=sites,
        cancelled=cancelled if isinstance(cancelled, int) else None,
    )


def entry_at(value: Any, index: int | None) -> Entry:
    """The entry ``value`` holds, which must be entry ``index`` (None: any)."""
    try:
        entry = Entry.from_dict(value)
    except LedgerError as exc:
        raise ProtocolError(f"registry sent a malformed entry: {exc}") from exc
    if index is not None and entry.index != index:
        raise ProtocolError(f"expected entry {index}, registry sent entry {entry.index}")
    return entry


def proof_hashes(value: Any) -> list[bytes]:
    proof = value.get("proof") if isinstance(value, dict) else None
    if not isinstance(proof, list) or len(proof) > 64:
        raise ProtocolError("a proof must be an array of at most 64 hashes")
    try:
        return [bytes.fromhex(hex64(item)) for item in proof]
    except (ApiError, TypeError) as exc:
        raise ProtocolError("proof hashes must be 64 lowercase hex digits") from exc


def field_int(value: Any, name: str) -> int:
    item = value.get(name) if isinstance(value, dict) else None
    if not isinstance(item, int) or isinstance(item, bool) or item < 0:
        raise ProtocolError(f"answer field {name!r}: expected a non-negative integer")
    return item


def field_str(value: Any, name: str) -> str:
    item = value.get(name) if isinstance(value, dict) else None
    if not isinstance(item, str):
        raise ProtocolError(f"answer field {name!r}: expected a string")
    return item


def hex64(value: str) -> str:
    """``value`` if it is 64 lowercase hex digits (a hash the caller names); else ApiError."""
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ApiError(f"expected 64 lowercase hex digits, found {value[:80]!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteRow:
    """One site as ``GET /v1/sites`` reports it (its presence is the registry's word)."""

    site: str
    organization: str | None
    presence: str
    last_seen: str | None
    verified_size: int | None
    behind: int | None
    running: int | None
    docker: bool | None
    sparql: bool | None
    version: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteList:
    size: int
    interval_s: float
    sites: tuple[SiteRow, ...]


PRESENCES = frozenset({"online", "lagging", "offline", "never"})
_SITE_FIELDS = {
    "site": str,
    "organization": str | None,
    "presence": str,
    "last_seen": str | None,
    "verified_size": int | None,
    "behind": int | None,
    "running": int | None,
    "docker": bool | None,
    "sparql": bool | None,
    "version": str | None,
}


def site_list(value: Any) -> SiteList:
    rows = value.get("sites") if isinstance(value, dict) else None
    interval = value.get("interval_s") if isinstance(value, dict) else None
    if not isinstance(rows, list):
        raise ProtocolError("a site list must hold a 'sites' array")
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
        raise ProtocolError("a site list must give a positive 'interval_s'")
    sites = []
    for row in rows:
        if not isinstance(row, dict) or set(row) != set(_SITE_FIELDS):
            raise ProtocolError(f"site list: expected the fields {sorted(_SITE_FIELDS)}")
        for name, kind in _SITE_FIELDS.items():
            item = row[name]
            wrong = not isinstance(item, kind) or (
                isinstance(item, bool) and kind in (int, int | None)
            )
            if wrong:
                raise ProtocolError(f"site list: field {name!r} of the wrong type")
        if row["presence"] not in PRESENCES:
            raise ProtocolError(f"site list: unknown presence {row['presence'][:20]!r}")
        sites.append(SiteRow(**row))
    return SiteList(size=field_int(value, "size"), interval_s=float(interval), sites=tuple(sites))
