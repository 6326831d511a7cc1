"""Site presence: the latest heartbeat of each site, in memory, and what it says about the site.

Pure over an injected clock (seconds, like :func:`time.time`); never written to the ledger or the
disk, so a restarted registry shows every site ``never`` until its next heartbeat (within one
interval). Bounded: one record per site, and only current sites get past authentication.

Rules, with ``interval`` the sites' heartbeat period (5 s by default):

- **never**: no heartbeat since the registry started;
- **offline**: the latest heartbeat arrived more than ``3 * interval`` ago (three missed);
- **lagging**: otherwise, when the site is behind (``behind`` = the ledger's size now minus the
  size the site last said it verified, never negative) and has made no progress for more than
  ``2 * interval``: progress is a heartbeat whose ``verified_size`` grew, or that caught up with
  the ledger's size when it arrived. A site following a busy ledger advances at every
  heartbeat and stays online; a stuck one turns lagging after two intervals;
- **online**: otherwise.

Refused (:class:`api.errors.HeartbeatRefused`, whose slug becomes the problem type):
``heartbeat-stale`` (409) when ``sent_at`` is not later than the stored heartbeat's (a replay, or
one overtaken by a newer), ``heartbeat-from-the-future`` (422) when ``sent_at`` is more than
``max_ahead`` seconds ahead of the registry's clock (a site could otherwise post one far-future
heartbeat and have every later one refused as stale).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from api.errors import HeartbeatRefused
from api.wire.heartbeat import Heartbeat
from ledger.events import format_time

INTERVAL_S = 5.0
LAG_INTERVALS = 2
OFFLINE_INTERVALS = 3
MAX_AHEAD_S = 30.0


class PresenceState(StrEnum):
    ONLINE = "online"
    LAGGING = "lagging"
    OFFLINE = "offline"
    NEVER = "never"


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """The latest heartbeat of a site, when it arrived, and when the site last made progress."""

    heartbeat: Heartbeat
    received: float
    progressed: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SitePresence:
    site: str
    presence: PresenceState
    last_seen: str | None  # the registry's time of the latest heartbeat
    behind: int | None
    heartbeat: Heartbeat | None

    def to_dict(self, organization: str | None) -> dict[str, Any]:
        """The site's row of ``GET /v1/sites``."""
        beat = self.heartbeat
        return {
            "site": self.site,
            "organization": organization,
            "presence": self.presence.value,
            "last_seen": self.last_seen,
            "verified_size": None if beat is None else beat.verified_size,
            "behind": self.behind,
            "running": None if beat is None else beat.running,
            "docker": None if beat is None else beat.docker,
            "sparql": None if beat is None else beat.sparql,
            "version": None if beat is None else beat.version,
        }


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Presence:
    """The presence table. Thread-safe."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        interval_s: float = INTERVAL_S,
        max_ahead_s: float = MAX_AHEAD_S,
    ) -> None:
        self._clock = clock
        self.interval_s = interval_s
        self._max_ahead_s = max_ahead_s
        self._seen: dict[str, Seen] = {}
        self._lock = threading.Lock()

    def record(self, heartbeat: Heartbeat, ledger_size: int) -> None:
        """Keep ``heartbeat`` as its site's latest; ``ledger_size`` is the size when it arrived.
        The caller has checked that the signer is this site. Raises :class:`HeartbeatRefused`."""
        now = self._clock()
        sent = _seconds(heartbeat.sent_at)
        if sent > now + self._max_ahead_s:
            raise HeartbeatRefused(
                "heartbeat-from-the-future",
                f"sent_at {heartbeat.sent_at} is {sent - now:.0f} s ahead of the registry's "
                f"clock (at most {self._max_ahead_s:.0f} s are accepted); check the site's clock",
            )
        with self._lock:
            before = self._seen.get(heartbeat.site)
            if before is not None and sent <= _seconds(before.heartbeat.sent_at):
                raise HeartbeatRefused(
                    "heartbeat-stale",
                    f"sent_at {heartbeat.sent_at} is not later than the latest heartbeat of "
                    f"{heartbeat.site!r} ({before.heartbeat.sent_at}): a replay, or overtaken",
                )
            progressed = (
                before is None
                or heartbeat.verified_size > before.heartbeat.verified_size
                or heartbeat.verified_size >= ledger_size
            )
            self._seen[heartbeat.site] = Seen(
                heartbeat=heartbeat,
                received=now,
                progressed=now if progressed or before is None else before.progressed,
            )

    def status(self, site: str, ledger_size: int) -> SitePresence:
        """How ``site`` stands now against a ledger of ``ledger_size`` entries."""
        now = self._clock()
        with self._lock:
            seen = self._seen.get(site)
        if seen is None:
            return SitePresence(
                site=site, presence=PresenceState.NEVER, last_seen=None, behind=None, heartbeat=None
            )
        behind = max(0, ledger_size - seen.heartbeat.verified_size)
        if now - seen.received > OFFLINE_INTERVALS * self.interval_s:
            presence = PresenceState.OFFLINE
        elif behind and now - seen.progressed > LAG_INTERVALS * self.interval_s:
            presence = PresenceState.LAGGING
        else:
            presence = PresenceState.ONLINE
        return SitePresence(
            site=site,
            presence=presence,
            last_seen=format_time(datetime.fromtimestamp(seen.received, UTC)),
            behind=behind,
            heartbeat=seen.heartbeat,
        )
