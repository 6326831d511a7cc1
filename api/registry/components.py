"""The OpenAPI components of ``/openapi.json``: the answer schemas (the events' own are
:mod:`api.registry.schemas`), one problem response per status and the request-signature scheme.

The paths of :mod:`api.registry.openapi` name these only through :func:`ref` and :func:`problems`,
so every ``$ref`` in the document resolves here.
"""

from __future__ import annotations

from typing import Any

from api.errors import PROBLEM_BASE
from api.registry.schemas import HEX64, TIME, event_schemas
from api.wire.httpsig import TAG
from api.wire.problems import PROBLEMS
from ledger.timewindow import TimeWindow

INDEX: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def problems(*statuses: int) -> dict[str, Any]:
    """The problem responses of ``statuses``, for an operation's ``responses``."""
    return {str(status): {"$ref": f"#/components/responses/Problem{status}"} for status in statuses}


_TITLES = {
    400: "The request is malformed (unknown or invalid parameter, malformed event, ...)",
    401: "No valid signature by a current member's key (missing, unknown key, stale, replayed)",
    403: "Authenticated, but not allowed (role, or the ledger's rules)",
    404: "No such entry, blob, task or path",
    405: "Method not allowed on this path (whatever the body)",
    409: (
        "The event conflicts with the ledger's state: a blob it names was never uploaded "
        "(blob-missing: upload it, post the same event again), or the site's result for this "
        "task is already in (result-exists); or a heartbeat is not newer than the site's "
        "latest (heartbeat-stale)"
    ),
    413: "Request body larger than the configured limit",
    415: "Wrong Content-Type",
    416: "`from` is beyond the ledger's size (range-not-satisfiable)",
    422: (
        "The event signature or blob hash does not verify, or the event's time lies outside "
        "the registry's window (event-time-out-of-window), or a heartbeat's sent_at lies ahead "
        "of the registry's clock (heartbeat-from-the-future)"
    ),
    500: "Internal error (no detail is disclosed)",
    503: "Storage temporarily unavailable; retry",
}


def components(time_window: TimeWindow | None) -> dict[str, Any]:
    """The document's ``components``; ``time_window`` is stated in the description of event
    times."""
    return {
        "schemas": {**event_schemas(time_window), **_answer_schemas()},
        "responses": _problem_responses(),
        "securitySchemes": {
            "httpMessageSignature": {
                "type": "apiKey",
                "in": "header",
                "name": "Signature",
                "description": (
                    "RFC 9421 Signature and Signature-Input fields (label 'pht', alg "
                    f"ed25519, keyid = member key id, tag {TAG!r}, created within 60 s, "
                    "nonce used once)."
                ),
            }
        },
    }


def _answer_schemas() -> dict[str, Any]:
    """What the registry answers with, other than events and entries."""
    return {
        "CosignatureRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["size", "cosignature"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                "cosignature": {
                    "type": "string",
                    "maxLength": 1024,
                    "description": "one C2SP cosignature/v1 line, '— <key name> <base64>'",
                },
            },
        },
        "CosignatureRecorded": {
            "type": "object",
            "additionalProperties": False,
            "required": ["size", "witness"],
            "properties": {"size": {"type": "integer"}, "witness": {"type": "string"}},
        },
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {
                    "type": "string",
                    "enum": [p.uri for p in PROBLEMS.values()],
                    "description": f"stable problem type; one of {PROBLEM_BASE}<slug>",
                },
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
            },
        },
        "EntriesPage": {
            "type": "object",
            "additionalProperties": False,
            "required": ["entries", "next", "size"],
            "properties": {
                "entries": {"type": "array", "items": ref("Entry")},
                "next": {**INDEX, "description": "the index to ask for next"},
                "size": {**INDEX, "description": "the ledger's size when answering"},
            },
        },
        "Appended": {
            "type": "object",
            "additionalProperties": False,
            "required": ["index", "event_id", "hash", "received"],
            "properties": {
                "index": INDEX,
                "event_id": HEX64,
                "hash": HEX64,
                "received": TIME,
            },
        },
        "InclusionProof": {
            "type": "object",
            "additionalProperties": False,
            "required": ["index", "size", "proof"],
            "properties": {
                "index": INDEX,
                "size": INDEX,
                "proof": {"type": "array", "items": HEX64, "description": "RFC 9162 2.1.3"},
            },
        },
        "ConsistencyProof": {
            "type": "object",
            "additionalProperties": False,
            "required": ["from", "to", "proof"],
            "properties": {
                "from": INDEX,
                "to": INDEX,
                "proof": {"type": "array", "items": HEX64, "description": "RFC 9162 2.1.4"},
            },
        },
        "BlobStored": {
            "type": "object",
            "additionalProperties": False,
            "required": ["sha256", "size"],
            "properties": {"sha256": HEX64, "size": {"type": "integer", "minimum": 0}},
        },
        "TaskView": {
            "type": "object",
            "additionalProperties": False,
            "required": ["task", "sites", "cancelled"],
            "properties": {
                "task": ref("Entry"),
                "sites": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["state", "index", "finished", "history"],
                        "properties": {
                            "state": {"type": "string"},
                            "index": {"oneOf": [INDEX, {"type": "null"}]},
                            "finished": {"type": "boolean"},
                            "history": {
                                "type": "array",
                                "items": INDEX,
                                "description": "The index of every status and result entry "
                                "the site posted for the task, oldest first.",
                            },
                        },
                    },
                },
                "cancelled": {"oneOf": [INDEX, {"type": "null"}]},
            },
        },
        "Health": _health("ok"),
        "Ready": _health("ready"),
    }


def _problem_responses() -> dict[str, Any]:
    """``Problem<status>`` for each status the registry answers with a problem document."""
    responses: dict[str, Any] = {}
    for status, description in _TITLES.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/problem+json": {"schema": ref("Problem")}},
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}},
                "Accept-Signature": {
                    "schema": {"type": "string"},
                    "description": "RFC 9421 5.1: the signature the registry expects",
                },
            }
        if status == 405:
            response["headers"] = {"Allow": {"schema": {"type": "string"}}}
        responses[f"Problem{status}"] = response
    return responses


def _health(status: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["status", "size", "integrator"],
        "properties": {
            "status": {"const": status},
            "size": INDEX,
            "integrator": {
                "type": "boolean",
                "description": "Whether this process signs the checkpoints (of replicas "
                "sharing a PostgreSQL ledger, one at a time does; a lone registry always)",
            },
        },
    }
