"""A site's heartbeat (``POST /v1/heartbeats``): what the site says about itself every few seconds.

Sent by ``siteclient follow`` (:mod:`siteclient.follow.presence`), signed like every request by
the site's key, read strictly by the registry (:mod:`api.registry.presence`). Not ledger
history: the registry keeps only the latest per site, in memory. ``sent_at`` orders a site's
heartbeats (a replay or an older one is refused); the rest is the site's own report::

    {"site": "umc", "version": "0.1.0", "verified_size": 74, "running": 1,
     "docker": true, "sparql": true, "sent_at": "2026-11-25T17:00:00.000000Z"}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger import fields as f
from ledger.canonical import canonical_bytes, parse_json
from ledger.errors import FormatError

MAX_HEARTBEAT = 1024  # bytes: the body limit of POST /v1/heartbeats
_FIELDS = ("site", "version", "verified_size", "running", "docker", "sparql", "sent_at")


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise FormatError(f"{where}: expected true or false, found {f.describe(value)}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    site: str
    version: str
    verified_size: int  # entries the site has verified under a checkpoint
    running: int  # task containers running now
    docker: bool  # the Docker engine answered
    sparql: bool | None  # the SPARQL endpoint answered (None: the site has none)
    sent_at: str  # RFC 3339 UTC, the site's clock

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def to_json(self) -> bytes:
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes) -> Heartbeat:
        """Read a heartbeat body strictly; raise the ledger's :class:`EncodingError` (not JSON)
        or :class:`FormatError` naming the field."""
        d = f.obj(parse_json(data, what="heartbeat"), "heartbeat", _FIELDS)
        return cls(
            site=f.name(d["site"], "heartbeat.site"),
            version=f.string(d["version"], "heartbeat.version", max_len=64),
            verified_size=f.integer(d["verified_size"], "heartbeat.verified_size"),
            running=f.integer(d["running"], "heartbeat.running", high=100_000),
            docker=_bool(d["docker"], "heartbeat.docker"),
            sparql=None if d["sparql"] is None else _bool(d["sparql"], "heartbeat.sparql"),
            sent_at=f.timestamp(d["sent_at"], "heartbeat.sent_at"),
        )
