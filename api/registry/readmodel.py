"""The read endpoints: task and member listings from the registry's state, and site presence.

``GET /v1/tasks`` and ``GET /v1/members`` answer from the replayed state
(:meth:`ledger.store.reads.LedgerReads.task_list`, ``member_list``); every index they give is an
entry a reader can prove included, and ``size`` is the ledger size they reflect. Readers that
must not take the registry's word (the CLI) list from their own verified replay instead.
``POST /v1/heartbeats`` and ``GET /v1/sites`` are the presence table
(:mod:`api.registry.presence`), kept in memory and never in the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import falcon

from api.errors import HeartbeatRefused
from api.registry.presence import Presence
from api.registry.resources import (
    JSON,
    MAX_INDEX,
    int_param,
    json_bytes,
    only_params,
    require_content_type,
)
from api.wire.heartbeat import MAX_HEARTBEAT, Heartbeat
from api.wire.problems import Problem
from ledger import fields as f
from ledger.bodies import Role
from ledger.errors import EncodingError, FormatError
from ledger.listing import DEFAULT_LIMIT, MAX_LIMIT, TaskQuery
from ledger.store.ledger import Ledger

TASK_PARAMS = ("author", "state", "site", "label", "since", "after", "limit")


class Tasks:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, TASK_PARAMS)
        after = int_param(req, "after", min_value=0, max_value=MAX_INDEX)
        limit = int_param(req, "limit", default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT)
        try:
            query = TaskQuery(
                author=_optional(req, "author", f.name),
                state=req.get_param("state"),
                site=_optional(req, "site", f.name),
                label=_optional(req, "label", _label),
                since=_optional(req, "since", f.timestamp),
                after=after,
                limit=limit,
            )
        except FormatError as exc:
            raise Problem("invalid-parameter", str(exc)) from exc
        resp.data = json_bytes(self._ledger.task_list(query).to_dict())
        resp.content_type = JSON


def _optional(req: falcon.Request, name: str, read: Callable[[object, str], str]) -> str | None:
    value = req.get_param(name)
    return None if value is None else read(value, name)


def _label(value: object, where: str) -> str:
    return f.string(value, where, max_len=200)


class Members:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        size, members = self._ledger.member_list()
        resp.data = json_bytes({"size": size, "members": [m.to_dict() for m in members]})
        resp.content_type = JSON


class Heartbeats:
    """``POST /v1/heartbeats``: a site's signed heartbeat, kept as its latest (204).

    The authenticator has checked the signature (a current member's key: 401 otherwise) and the
    role (a site: 403 ``forbidden`` otherwise); this resource refuses a heartbeat naming another
    site (403 ``forbidden``) and whatever the presence table refuses."""

    body_limit = MAX_HEARTBEAT
    writers: ClassVar[frozenset[Role] | None] = frozenset({Role.SITE})

    def __init__(self, ledger: Ledger, presence: Presence) -> None:
        self._ledger = ledger
        self._presence = presence

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        require_content_type(req, JSON)
        try:
            heartbeat = Heartbeat.from_json(req.context.body)
        except (EncodingError, FormatError) as exc:
            raise Problem("malformed-heartbeat", str(exc)) from exc
        signer = req.context.member.name
        if heartbeat.site != signer:
            raise Problem(
                "forbidden",
                f"the heartbeat names site {heartbeat.site!r} but is signed by {signer!r}; "
                "a site reports only for itself",
            )
        try:
            self._presence.record(heartbeat, self._ledger.size)
        except HeartbeatRefused as exc:
            raise Problem(exc.slug, exc.detail) from exc
        resp.status = falcon.HTTP_204


class Sites:
    def __init__(self, ledger: Ledger, presence: Presence) -> None:
        self._ledger = ledger
        self._presence = presence

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        size, members = self._ledger.member_list()
        sites = [
            self._presence.status(m.name, size).to_dict(m.organization)
            for m in members
            if m.role == Role.SITE.value and m.revoked is None
        ]
        interval = self._presence.interval_s
        resp.data = json_bytes(
            {
                "size": size,
                "interval_s": int(interval) if interval == int(interval) else interval,
                "sites": sites,
            }
        )
        resp.content_type = JSON
