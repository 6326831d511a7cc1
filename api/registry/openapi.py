"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

Built from the same limits :func:`api.registry.app.create_app` configures, so the document states
what the server enforces. Events, entries and every kind's body are described field by field as
the ledger parses them (:mod:`api.registry.schemas`). Schemathesis checks, in the test suite, that
every answer conforms to it.
"""

from __future__ import annotations

from typing import Any

from api.errors import PROBLEM_BASE
from api.registry.schemas import HEX64, TIME, event_schemas
from api.wire.httpsig import TAG
from api.wire.problems import PROBLEMS
from ledger.timewindow import DEFAULT_TIME_WINDOW, TimeWindow

INDEX: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/Problem{status}"} for status in statuses}


def _param(
    name: str, where: str, schema: dict[str, Any], description: str, *, required: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


_AUTH = (400, 401, 404, 405, 500, 503)
_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the new resource"}}
_TITLES = {
    400: "The request is malformed (unknown or invalid parameter, malformed event, ...)",
    401: "No valid signature by a current member's key (missing, unknown key, stale, replayed)",
    403: "Authenticated, but not allowed (role, or the ledger's rules)",
    404: "No such entry, blob, task or path",
    405: "Method not allowed on this path (whatever the body)",
    409: (
        "The event conflicts with the ledger's state: a blob it names was never uploaded "
        "(blob-missing: upload it, post the same event again), or the site's result for this "
        "task is already in (result-exists)"
    ),
    413: "Request body larger than the configured limit",
    415: "Wrong Content-Type",
    416: "`from` is beyond the ledger's size (range-not-satisfiable)",
    422: (
        "The event signature or blob hash does not verify, or the event's time lies outside "
        "the registry's window (event-time-out-of-window)"
    ),
    500: "Internal error (no detail is disclosed)",
    503: "Storage temporarily unavailable; retry",
}


def document(
    *,
    max_body: int,
    max_blob: int,
    max_limit: int,
    max_wait: int,
    time_window: TimeWindow | None = DEFAULT_TIME_WINDOW,
    version: str = "1.0.0",
) -> dict[str, Any]:
    """The document; ``time_window`` is the ledger's (stated in the description of event times)."""
    schemas: dict[str, Any] = {
        **event_schemas(time_window),
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
                "entries": {"type": "array", "items": _ref("Entry")},
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
                "task": _ref("Entry"),
                "sites": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["state", "index", "finished"],
                        "properties": {
                            "state": {"type": "string"},
                            "index": {"oneOf": [INDEX, {"type": "null"}]},
                            "finished": {"type": "boolean"},
                        },
                    },
                },
                "cancelled": {"oneOf": [INDEX, {"type": "null"}]},
            },
        },
        "Health": {
            "type": "object",
            "additionalProperties": False,
            "required": ["status", "size"],
            "properties": {"status": {"const": "ok"}, "size": INDEX},
        },
    }
    responses: dict[str, Any] = {}
    for status, description in _TITLES.items():
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
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
    signed: list[dict[str, list[str]]] = [{"httpMessageSignature": []}]
    public: list[dict[str, list[str]]] = []
    sha_param = _param("sha256", "path", HEX64, "hex SHA-256 of the blob", required=True)
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness",
                "security": public,
                "responses": {
                    "200": _json(_ref("Health"), "The registry is up"),
                    **_problems(400, 405, 500),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": public,
                "responses": {
                    "200": _json({"type": "object"}, "OpenAPI 3.1 document"),
                    **_problems(400, 405, 500),
                },
            }
        },
        "/v1/checkpoint": {
            "get": {
                "operationId": "checkpoint",
                "summary": "The latest signed checkpoint (C2SP tlog-checkpoint in a signed note)",
                "security": public,
                "responses": {
                    "200": {
                        "description": "Signed note",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_problems(400, 405, 500),
                },
            }
        },
        "/v1/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Entries from index `from`; long-polls up to `wait` s for the next one",
                "security": signed,
                "parameters": [
                    _param("from", "query", INDEX, "first index", required=False),
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": max_limit, "default": 100},
                        "most entries to return",
                        required=False,
                    ),
                    _param(
                        "wait",
                        "query",
                        {"type": "integer", "minimum": 0, "maximum": max_wait, "default": 0},
                        "seconds to wait when `from` equals the ledger's size",
                        required=False,
                    ),
                ],
                "description": (
                    "`from` may be at most the ledger's size: equal to it, the request waits "
                    "up to `wait` s for the next entry; beyond it, 416 range-not-satisfiable."
                ),
                "responses": {
                    "200": {
                        **_json(_ref("EntriesPage"), "A page of entries, possibly empty"),
                        "headers": {
                            "Retry-After": {
                                "schema": {"type": "string"},
                                "description": "set when no long-poll slot was free",
                            }
                        },
                    },
                    **_problems(*_AUTH, 416),
                },
            },
            "post": {
                "operationId": "appendEvent",
                "summary": "Append a signed event (idempotent)",
                "description": (
                    "Refused, with nothing appended: a malformed event or body (400 "
                    "malformed-event, including a task image no site can parse), a bad "
                    "signature (422), an event time outside the registry's window (422 "
                    "event-time-out-of-window), a named blob the registry does not hold (409 "
                    "blob-missing: a task's config_blob, a result's log and its outputs not "
                    "delivered to a FileService), the rules (403 rule-violation)."
                ),
                "security": signed,
                "requestBody": {
                    "required": True,
                    "description": f"at most {max_body} bytes",
                    "content": {"application/json": {"schema": _ref("SignedEvent")}},
                },
                "responses": {
                    "201": {**_json(_ref("Appended"), "Appended"), "headers": _LOCATION},
                    "200": _json(_ref("Appended"), "Already in the ledger: its entry"),
                    **_problems(*_AUTH, 403, 409, 413, 415, 422),
                },
            },
        },
        "/v1/events/{index}": {
            "get": {
                "operationId": "getEvent",
                "summary": "One entry, as its canonical bytes",
                "security": signed,
                "parameters": [_param("index", "path", INDEX, "entry index", required=True)],
                "responses": {
                    "200": _json(_ref("Entry"), "The entry"),
                    **_problems(*_AUTH),
                },
            }
        },
        "/v1/proofs/inclusion": {
            "get": {
                "operationId": "inclusionProof",
                "summary": "RFC 9162 inclusion proof of entry `index` in the tree of `size`",
                "security": signed,
                "parameters": [
                    _param("index", "query", INDEX, "entry index", required=True),
                    _param("size", "query", {**INDEX, "minimum": 1}, "tree size", required=True),
                ],
                "responses": {
                    "200": _json(_ref("InclusionProof"), "Proof hashes, hex"),
                    **_problems(*_AUTH),
                },
            }
        },
        "/v1/proofs/consistency": {
            "get": {
                "operationId": "consistencyProof",
                "summary": "RFC 9162 consistency proof between tree sizes `from` and `to`",
                "security": signed,
                "parameters": [
                    _param("from", "query", INDEX, "older tree size", required=True),
                    _param("to", "query", INDEX, "newer tree size", required=True),
                ],
                "responses": {
                    "200": _json(_ref("ConsistencyProof"), "Proof hashes, hex"),
                    **_problems(*_AUTH),
                },
            }
        },
        "/v1/blobs/{sha256}": {
            "put": {
                "operationId": "putBlob",
                "summary": "Store a blob; its signed Content-Digest (sha-256) must name the path",
                "security": signed,
                "parameters": [sha_param],
                "requestBody": {
                    "required": True,
                    "description": f"at most {max_blob} bytes",
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "responses": {
                    "201": {**_json(_ref("BlobStored"), "Stored"), "headers": _LOCATION},
                    "200": _json(_ref("BlobStored"), "Already stored"),
                    **_problems(*_AUTH, 403, 413, 415, 422),
                },
            },
            "get": {
                "operationId": "getBlob",
                "summary": "A blob's bytes",
                "security": signed,
                "parameters": [sha_param],
                "responses": {
                    "200": {
                        "description": "The bytes; Content-Digest carries their sha-256",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **_problems(*_AUTH),
                },
            },
        },
        "/v1/tasks/{event_id}": {
            "get": {
                "operationId": "getTask",
                "summary": "Read model: the task's entry and each site's latest state",
                "security": signed,
                "parameters": [
                    _param("event_id", "path", HEX64, "the task's event id", required=True)
                ],
                "responses": {
                    "200": _json(_ref("TaskView"), "The task"),
                    **_problems(*_AUTH),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PHT registry",
            "version": version,
            "description": (
                "The signed, append-only ledger of the Personal Health Train. Errors are RFC 9457 "
                "problem documents with stable types. Requests other than /healthz, "
                "/openapi.json and /v1/checkpoint carry an RFC 9421 HTTP message signature "
                f"(ed25519, tag {TAG!r}) by a current member's key over @method, @target-uri "
                "and, with a body, content-digest (RFC 9530), with created and a fresh nonce."
            ),
        },
        "servers": [{"url": "/"}],
        "security": signed,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
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
        },
    }
