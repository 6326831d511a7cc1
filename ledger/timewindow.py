"""How far an event's own ``time`` may lie from the registry's clock when the event is appended.

An author dates its event (``event.time``); the registry stamps the entry with its own clock
(``entry.received``). :class:`TimeWindow` bounds the difference at append time, so that no event
dated in the year 9999 or 0001 enters the log for good and misleads every reader that orders or
displays events by their time.

Decisions:

- **Asymmetric, with defaults of 10 minutes ahead and 24 hours behind.** An event from the future
  is never legitimate; 10 minutes absorbs ordinary clock skew between an author and the registry.
  Behind, the window must admit the events clients post again after an outage: a site posts the
  signed result it journaled before a crash when it restarts, and a FileService posts a pending
  ``transfer`` event when the registry is back (both re-post the *same* signed event, so its time
  is as old as the outage is long). A day covers a night or a weekend day of downtime; a reader
  sees an entry's true arrival time in ``received`` anyway.
- **An admission check, not a rule.** :func:`ledger.rules.apply` does not run it, so recovery,
  followers and audits replay old entries without judging their age. A duplicate of an event
  already in the ledger is answered with its entry whatever its time (the appender looks for it
  before this check runs).
- The comparison is against ``received``, the time the entry records, so the check can be redone
  by anyone from the entry alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from ledger.errors import EventTimeError

DEFAULT_PAST = timedelta(hours=24)
DEFAULT_FUTURE = timedelta(minutes=10)


def parse_time(text: str) -> datetime:
    """A ledger timestamp (validated by :func:`ledger.fields.timestamp`: it ends in ``Z``) as an
    aware UTC datetime."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@lru_cache(maxsize=16)
def _registry_time(text: str) -> datetime:
    """The registry's time of a batch: every event of a group commit shares it, so it is parsed
    once (the window check is on the committer's serial path: bench/ledger_bench.py, appends)."""
    return parse_time(text)


def describe(span: timedelta) -> str:
    """``span`` in the largest whole unit that states it exactly (``10 minutes``, ``24 hours``)."""
    seconds = span.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def _roughly(span: timedelta) -> str:
    """``span`` rounded down to its largest unit (``3 days``, ``12 minutes``, ``0.5 seconds``)."""
    seconds = span.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count:,} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeWindow:
    """An event may be dated at most ``past`` before and ``future`` after the registry's time."""

    past: timedelta = DEFAULT_PAST
    future: timedelta = DEFAULT_FUTURE

    def __post_init__(self) -> None:
        if self.past < timedelta(0) or self.future < timedelta(0):
            raise ValueError(f"a time window cannot be negative: {self}")

    def describe(self) -> str:
        return f"{describe(self.past)} before to {describe(self.future)} after"

    def check(self, event_time: str, now: str) -> None:
        """Return if ``event_time`` lies in the window around ``now`` (the registry's time, as
        the entry's ``received`` records it); raise :class:`EventTimeError` naming both times and
        the window otherwise. Both are timestamps :func:`ledger.fields.timestamp` accepted."""
        ahead = parse_time(event_time) - _registry_time(now)  # never overflows, unlike now + future
        if -self.past <= ahead <= self.future:
            return
        side = "ahead of" if ahead > timedelta(0) else "behind"
        raise EventTimeError(
            f"event.time {event_time} is {_roughly(abs(ahead))} {side} the "
            f"registry's time {now}; the registry accepts events dated from {self.describe()} "
            "its time"
        )


DEFAULT_TIME_WINDOW = TimeWindow()
