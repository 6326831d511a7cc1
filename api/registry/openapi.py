"""The OpenAPI 3.1 document served at ``GET /openapi.json``: its paths, and the info around them.

Built from the same limits :func:`api.registry.app.create_app` configures, so the document states
what the server enforces; the schemas are :mod:`api.registry.schemas` (events, entries, bodies,
field by field as the ledger parses them) and :mod:`api.registry.components` (the rest).
Schemathesis checks, in the test suite, that every answer conforms to it.
"""

from __future__ import annotations

from typing import Any

from api.registry.components import INDEX, components, problems, ref
from api.registry.readspec import read_paths, read_schemas
from api.registry.schemas import HEX64
from api.wire.httpsig import TAG
from ledger.timewindow import DEFAULT_TIME_WINDOW, TimeWindow


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


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
                    "200": _json(ref("Health"), "The registry is up"),
                    **problems(400, 405, 500),
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: the store answers (a replica's database is reachable)",
                "security": public,
                "responses": {
                    "200": _json(ref("Ready"), "The registry can answer from its store"),
                    **problems(400, 405, 500, 503),
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
                    **problems(400, 405, 500),
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
                    **problems(400, 405, 500),
                },
            }
        },
        "/v1/checkpoint/cosigned": {
            "get": {
                "operationId": "cosignedCheckpoint",
                "summary": "The newest checkpoint witnesses cosigned, with every cosignature",
                "description": (
                    "One C2SP signed note: the log's signature line, then each witness's "
                    "cosignature/v1 line (C2SP tlog-cosignature) held for that size. The newest "
                    "size meeting the ledger's witness policy is served; before any does, the "
                    "newest size with any cosignature; with none, the latest checkpoint."
                ),
                "security": public,
                "responses": {
                    "200": {
                        "description": "Signed note with cosignatures",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **problems(400, 405, 500),
                },
            }
        },
        "/v1/cosignatures": {
            "post": {
                "operationId": "postCosignature",
                "summary": "A witness's cosignature/v1 line for the checkpoint of `size`",
                "description": (
                    "By a member that published a witness_key; refused (422 bad-cosignature) "
                    "when the line is malformed, by another key, for a size the registry did "
                    "not sign recently, does not verify over that checkpoint, or is older than "
                    "one this witness already sent. The same line again answers 200."
                ),
                "security": signed,
                "requestBody": {
                    "required": True,
                    "description": "at most 4096 bytes",
                    "content": {"application/json": {"schema": ref("CosignatureRequest")}},
                },
                "responses": {
                    "201": _json(ref("CosignatureRecorded"), "Recorded"),
                    "200": _json(ref("CosignatureRecorded"), "Recorded before"),
                    **problems(*_AUTH, 403, 413, 415, 422),
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
                        **_json(ref("EntriesPage"), "A page of entries, possibly empty"),
                        "headers": {
                            "Retry-After": {
                                "schema": {"type": "string"},
                                "description": "set when no long-poll slot was free",
                            }
                        },
                    },
                    **problems(*_AUTH, 416),
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
                    "content": {"application/json": {"schema": ref("SignedEvent")}},
                },
                "responses": {
                    "201": {**_json(ref("Appended"), "Appended"), "headers": _LOCATION},
                    "200": _json(ref("Appended"), "Already in the ledger: its entry"),
                    **problems(*_AUTH, 403, 409, 413, 415, 422),
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
                    "200": _json(ref("Entry"), "The entry"),
                    **problems(*_AUTH),
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
                    "200": _json(ref("InclusionProof"), "Proof hashes, hex"),
                    **problems(*_AUTH),
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
                    "200": _json(ref("ConsistencyProof"), "Proof hashes, hex"),
                    **problems(*_AUTH),
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
                    "201": {**_json(ref("BlobStored"), "Stored"), "headers": _LOCATION},
                    "200": _json(ref("BlobStored"), "Already stored"),
                    **problems(*_AUTH, 403, 413, 415, 422),
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
                    **problems(*_AUTH),
                },
            },
        },
        "/v1/tile/{path}": {
            "get": {
                "operationId": "getTile",
                "summary": "A C2SP tlog-tiles hash tile or entry bundle (prefix /v1)",
                "description": (
                    "`path` is `<L>/<N>[.p/<W>]` (a hash tile of level L) or "
                    "`entries/<N>[.p/<W>]` (the entries under level-0 tile N, each behind its "
                    "length as a big-endian uint16), N in 3-digit elements (1234067 is "
                    "x001/x234/067). Served once the ledger holds all it covers; immutable."
                ),
                "security": signed,
                "parameters": [
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The tile's bytes",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **problems(*_AUTH),
                },
            }
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
                    "200": _json(ref("TaskView"), "The task"),
                    **problems(*_AUTH),
                },
            }
        },
    }
    paths.update(read_paths())
    parts = components(time_window)
    parts["schemas"].update(read_schemas())
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
        "components": parts,
    }
