"""The OpenAPI paths and schemas of the read endpoints (:mod:`api.registry.readmodel`):
``GET /v1/tasks``, ``GET /v1/members``, ``POST /v1/heartbeats``, ``GET /v1/sites``.

Merged into the document by :mod:`api.registry.openapi` and :mod:`api.registry.components`.
"""

from __future__ import annotations

from typing import Any

from api.registry.components import INDEX
from api.registry.components import problems as _problems
from api.registry.components import ref as _ref
from api.registry.schemas import HEX64, NAME, TIME
from api.wire.heartbeat import MAX_HEARTBEAT
from ledger.listing import DEFAULT_LIMIT, MAX_LIMIT, STATES

_NULL = {"type": "null"}
_AUTH = (400, 401, 404, 405, 500, 503)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, _NULL]}


def read_paths() -> dict[str, Any]:
    signed: list[dict[str, list[str]]] = [{"httpMessageSignature": []}]
    return {
        "/v1/tasks": {
            "get": {
                "operationId": "listTasks",
                "summary": "Tasks, newest first, from the registry's read model",
                "description": (
                    "Filters combine. `state` matches a task when any of its sites is in that "
                    "state (with `site`: when that site is); `cancelled` also matches every "
                    "cancelled task; `finished`/`unfinished`: whether every site has a final "
                    "result. `since` is compared with the registry's receipt time of the task "
                    "(`created`). Pages: pass `next` as `after`. Every `index` is an entry "
                    "index whose inclusion a reader can prove against a checkpoint of at least "
                    "`size` entries."
                ),
                "security": signed,
                "parameters": [
                    _query("author", NAME, "the researcher who posted the task"),
                    _query("state", {"type": "string", "enum": sorted(STATES)}, "a state"),
                    _query("site", NAME, "a site the task names"),
                    _query("label", {"type": "string", "maxLength": 200}, "the task's label"),
                    _query("since", TIME, "received at or after this time"),
                    _query("after", INDEX, "only tasks at an index below this one"),
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT,
                        },
                        "most tasks to return",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("TaskList"), "A page of tasks, possibly empty"),
                    **_problems(*_AUTH),
                },
            }
        },
        "/v1/members": {
            "get": {
                "operationId": "listMembers",
                "summary": "Every member, current and revoked, in the order they joined",
                "security": signed,
                "responses": {
                    "200": _json(_ref("MemberList"), "The members"),
                    **_problems(*_AUTH),
                },
            }
        },
        "/v1/heartbeats": {
            "post": {
                "operationId": "postHeartbeat",
                "summary": "A site's heartbeat; kept in memory as its latest, never in the ledger",
                "description": (
                    "Signed by a current site's key. Refused: not a site or another site's name "
                    "(403 forbidden), a malformed body (400 malformed-heartbeat), a `sent_at` "
                    "not later than the site's latest (409 heartbeat-stale: a replay), or more "
                    "than 30 s ahead of the registry's clock (422 heartbeat-from-the-future)."
                ),
                "security": signed,
                "requestBody": {
                    "required": True,
                    "description": f"at most {MAX_HEARTBEAT} bytes",
                    "content": {"application/json": {"schema": _ref("Heartbeat")}},
                },
                "responses": {
                    "204": {"description": "Kept"},
                    **_problems(*_AUTH, 403, 409, 413, 415, 422),
                },
            }
        },
        "/v1/sites": {
            "get": {
                "operationId": "listSites",
                "summary": "Each current site's presence, from its latest heartbeat",
                "description": (
                    "never: no heartbeat since the registry started; offline: none for 3 "
                    "intervals; lagging: behind the ledger with no progress for 2 intervals; "
                    "online otherwise."
                ),
                "security": signed,
                "responses": {
                    "200": _json(_ref("SiteList"), "The sites"),
                    **_problems(*_AUTH),
                },
            }
        },
    }


def read_schemas() -> dict[str, Any]:
    def obj(properties: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": sorted(properties),
            "properties": properties,
        }

    text = {"type": "string"}
    count = {"type": "integer", "minimum": 0}
    site_line = obj(
        {"state": text, "index": _nullable(INDEX), "reason": _nullable(text)},
    )
    task_line = obj(
        {
            "task": HEX64,
            "index": INDEX,
            "author": text,
            "image": text,
            "label": _nullable(text),
            "parent": _nullable(HEX64),
            "created": TIME,
            "sites": {"type": "object", "additionalProperties": site_line},
            "cancelled": _nullable(obj({"index": INDEX, "reason": _nullable(text)})),
        }
    )
    member = obj(
        {
            "name": text,
            "role": text,
            "key_id": HEX64,
            "public_key": text,
            "encryption_key": _nullable(text),
            "organization": _nullable(text),
            "file_service": _nullable(text),
            "index": INDEX,
            "revoked": _nullable(INDEX),
        }
    )
    site = obj(
        {
            "site": text,
            "organization": _nullable(text),
            "presence": {"type": "string", "enum": ["online", "lagging", "offline", "never"]},
            "last_seen": _nullable(TIME),
            "verified_size": _nullable(count),
            "behind": _nullable(count),
            "running": _nullable(count),
            "docker": _nullable({"type": "boolean"}),
            "sparql": _nullable({"type": "boolean"}),
            "version": _nullable(text),
        }
    )
    return {
        "TaskList": obj(
            {
                "size": INDEX,
                "tasks": {"type": "array", "items": task_line},
                "next": _nullable(INDEX),
            }
        ),
        "MemberList": obj({"size": INDEX, "members": {"type": "array", "items": member}}),
        "Heartbeat": obj(
            {
                "site": NAME,
                "version": {"type": "string", "maxLength": 64},
                "verified_size": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
                "running": {"type": "integer", "minimum": 0, "maximum": 100_000},
                "docker": {"type": "boolean"},
                "sparql": _nullable({"type": "boolean"}),
                "sent_at": TIME,
            }
        ),
        "SiteList": obj(
            {
                "size": INDEX,
                "interval_s": {"type": "number", "exclusiveMinimum": 0},
                "sites": {"type": "array", "items": site},
            }
        ),
    }
