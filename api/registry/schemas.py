"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of events, stated as the ledger parses them.

The document served at ``/openapi.json`` (:mod:`api.registry.openapi`) takes the event, entry and
body schemas from here. Each body schema lists exactly the fields its ``from_dict`` in
:mod:`ledger.bodies` reads (``additionalProperties: false``), which are required, and each field's
type, pattern, length and range; the patterns are the ledger's own, anchored. An event's ``body``
is tied to its ``kind`` with ``oneOf`` (one branch per kind, ``kind`` a ``const``).

What JSON Schema cannot say is left to the parser and stated in a ``description``: a task's image
must parse with the strict reference parser (:mod:`ledger.reference`; the pattern below is its
grammar without the length, port-range, IPv6 and Docker Hub namespace checks), a time must be a
real one (no 30 February), a public key a canonical base64 Ed25519 key, and a result's output
names must differ. So every event the parser accepts validates, and the schema refuses a subset of
what the parser refuses.
"""

from __future__ import annotations

import re
from typing import Any

from ledger import bodies
from ledger import fields as f
from ledger import review as review_bodies
from ledger.bodies import Decision, EventKind, MemberAction, ResultState, Role, StatusState
from ledger.reference import REFERENCE_MAX_LENGTH
from ledger.timewindow import TimeWindow

MAX_SAFE = 2**53 - 1  # ledger.fields.integer's default bounds: [0, 2**53 - 1]


def _anchored(pattern: re.Pattern[str] | str) -> str:
    text = pattern if isinstance(pattern, str) else pattern.pattern
    return f"^(?:{text})$"


def _string(
    pattern: re.Pattern[str] | str | None = None, *, max_len: int, **more: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_len, **more}
    if pattern is not None:
        schema["pattern"] = _anchored(pattern)
    return schema


def _integer(low: int = 0, high: int = MAX_SAFE) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _object(required: list[str], properties: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
        **more,
    }


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


HEX64 = _string(f.HEX64, max_len=64)
# ASCII digits only (ledger.fields.TIME's \d admits other scripts' digits; fromisoformat then
# refuses them), and only real months, days, hours, minutes and seconds.
TIME_PATTERN = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?Z"
)
TIME = _string(
    TIME_PATTERN,
    max_len=32,
    description="UTC time, RFC 3339 with 'Z' and at most 6 fractional digits; a real date",
)
NAME = _string(f.NAME, max_len=63, description="a member name")
# Canonical base64 of 32 bytes (the last digit carries no stray bits), and of a 64-byte signature
# as ``ledger.events`` reads it (it accepts stray bits and re-encodes canonically).
PUBLIC_KEY = _string(
    r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=",
    max_len=64,
    description="base64 of the 32 raw Ed25519 public key bytes",
)
SIGNATURE = _string(
    r"[A-Za-z0-9+/]{86}==",
    max_len=88,
    description="base64 Ed25519 signature over b'pht/v1/event\\n' + JCS(event)",
)

# Docker's reference grammar (see ledger.reference), lowercase ASCII names, sha256 digests only.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::[1-9][0-9]{{0,4}})?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?"
)


def _enum(values: type[Any]) -> dict[str, Any]:
    return {"enum": [member.value for member in values]}


def body_schemas() -> dict[str, dict[str, Any]]:
    """The component schemas of the bodies, by name (``TaskBody``, ...), and their parts."""
    contact = {
        "encryption_key": _string(
            bodies.AGE_RECIPIENT, max_len=62, description="age X25519 recipient (age1...)"
        ),
        "file_service": _string(
            bodies.FILE_SERVICE, max_len=256, description="http(s) URL of the FileService"
        ),
    }
    org = {**NAME, "description": "the member's organization (absent: it is its own)"}
    member_fields = {
        "name": NAME,
        "role": _enum(Role),
        "public_key": PUBLIC_KEY,
        **contact,
        "org": org,
        "witness_key": _string(
            max_len=300,
            description="the member's C2SP cosignature/v1 verifier key <name>+<hash>+<base64>",
        ),
    }
    blob_ref = _object(["sha256", "size"], {"sha256": HEX64, "size": _integer()})
    return {
        "MemberSpec": _object(["name", "role", "public_key"], member_fields),
        "ConsortiumBody": _object(
            ["name", "origin", "log_key", "members"],
            {
                "name": _string(max_len=200),
                "origin": _string(bodies.ORIGIN, max_len=128, description="the log origin"),
                "log_key": _string(
                    max_len=512,
                    description="the registry's C2SP note verifier key <origin>+<hash>+<base64>",
                ),
                "members": {"type": "array", "items": ref("MemberSpec"), "maxItems": 1024},
            },
        ),
        "MemberBody": _object(
            ["action", "name", "role", "public_key"],
            {"action": _enum(MemberAction), **member_fields},
            allOf=[
                {
                    "if": {"properties": {"action": {"const": MemberAction.REKEY.value}}},
                    "then": {
                        "anyOf": [{"required": ["encryption_key"]}, {"required": ["witness_key"]}]
                    },
                },
                {
                    "if": {"required": ["org"]},
                    "then": {"properties": {"action": {"const": MemberAction.ADD.value}}},
                },
            ],
        ),
        "Limits": _object(
            [],
            {
                "timeout_s": _integer(1, 86400 * 7),
                "memory_mb": _integer(4, 1 << 20),
                "cpu_millis": _integer(1, 1 << 20),
            },
        ),
        "TaskBody": _object(
            ["image", "sites"],
            {
                "image": _string(
                    IMAGE_PATTERN,
                    max_len=REFERENCE_MAX_LENGTH,
                    description=(
                        "Docker image reference, parsed strictly (ledger.reference): also a "
                        "registry name of at most 255 characters, a port 1..65535, an IPv6 "
                        "host in compressed form, no registry-like namespace on docker.io"
                    ),
                ),
                "sites": {
                    "type": "array",
                    "items": NAME,
                    "minItems": 1,
                    "maxItems": 256,
                    "uniqueItems": True,
                },
                "config": {"type": "object", "description": "inline configuration"},
                "config_blob": {
                    **HEX64,
                    "description": "sha256 of a configuration blob the registry holds",
                },
                "limits": ref("Limits"),
                "parent": HEX64,
                "label": _string(max_len=200),
                "recipient": NAME,
                "deliver": {"const": True},
                "inputs": {"type": "array", "items": HEX64, "minItems": 1, "maxItems": 64},
            },
            oneOf=[{"required": ["config"]}, {"required": ["config_blob"]}],
            dependentRequired={"deliver": ["recipient"]},
        ),
        "CancelBody": _object(["task"], {"task": HEX64, "reason": _string(max_len=1000)}),
        "StatusBody": _object(
            ["task", "state"],
            {"task": HEX64, "state": _enum(StatusState), "reason": _string(max_len=1000)},
        ),
        "BlobRef": blob_ref,
        "Output": _object(
            ["name", "sha256", "size"],
            {
                "name": _string(bodies.OUTPUT_NAME, max_len=128),
                "sha256": HEX64,
                "size": _integer(),
                "delivered_to": NAME,
            },
        ),
        "ResultBody": _object(
            ["task", "state", "outputs"],
            {
                "task": HEX64,
                "state": _enum(ResultState),
                "outputs": {
                    "type": "array",
                    "items": ref("Output"),
                    "maxItems": 1000,
                    "description": "output names differ",
                },
                "exit_code": _integer(-(2**31), 2**32),
                "image_digest": _string(bodies.DIGEST, max_len=80),
                "started": TIME,
                "finished": TIME,
                "log": ref("BlobRef"),
                "reason": _string(max_len=2000),
            },
        ),
        **review_schemas(),
        "TransferBody": _object(
            ["sender", "recipient", "task", "sha256", "size"],
            {
                "sender": NAME,
                "recipient": NAME,
                "task": HEX64,
                "sha256": HEX64,
                "size": _integer(),
            },
        ),
    }


def _line(max_len: int, description: str) -> dict[str, Any]:
    return _string(
        r"(?=.*\S)[^\x00-\x1f\x7f-\x9f]+",
        max_len=max_len,
        description=f"{description}; a non-empty line of printable text",
    )


def review_schemas() -> dict[str, dict[str, Any]]:
    """The bodies of algorithm review (DESIGN 11; :mod:`ledger.review`)."""
    count = _integer(1, review_bodies.POLICY_MAX)
    return {
        "SubmissionBody": _object(
            ["image", "name", "version", "description", "source"],
            {
                "image": _string(
                    IMAGE_PATTERN.removesuffix("?"),
                    max_len=REFERENCE_MAX_LENGTH,
                    description="the image pinned by digest (name[:tag]@sha256:<64 hex>), "
                    "parsed strictly like a task's image",
                ),
                "name": _line(200, "the algorithm's name"),
                "version": _line(64, "its version"),
                "description": _string(max_len=2000),
                "source": _string(
                    review_bodies.SOURCE, max_len=512, description="http(s) URL of its source"
                ),
                "config_schema": {
                    "type": "object",
                    "description": "the JSON Schema its task configurations are expected to follow",
                },
            },
        ),
        "ReviewBody": _object(
            ["submission", "decision", "note"],
            {
                "submission": {**HEX64, "description": "the submission's event id"},
                "decision": _enum(Decision),
                "note": _string(max_len=2000),
            },
        ),
        "ReviewPolicyBody": _object(
            ["approvals", "organizations"],
            {"approvals": count, "organizations": count},
            description="organizations is at most approvals",
        ),
        "WitnessPolicyBody": _object(
            ["policy"],
            {
                "policy": _string(
                    max_len=16 * 1024,
                    description="C2SP tlog-policy text: log, witness, group and quorum lines",
                )
            },
        ),
    }


BODY_SCHEMA_NAMES: dict[EventKind, str] = {
    EventKind.CONSORTIUM: "ConsortiumBody",
    EventKind.MEMBER: "MemberBody",
    EventKind.TASK: "TaskBody",
    EventKind.CANCEL: "CancelBody",
    EventKind.STATUS: "StatusBody",
    EventKind.RESULT: "ResultBody",
    EventKind.TRANSFER: "TransferBody",
    EventKind.SUBMISSION: "SubmissionBody",
    EventKind.REVIEW: "ReviewBody",
    EventKind.REVIEW_POLICY: "ReviewPolicyBody",
    EventKind.WITNESS_POLICY: "WitnessPolicyBody",
}


def event_schemas(time_window: TimeWindow | None) -> dict[str, dict[str, Any]]:
    """``Event``, ``SignedEvent`` and ``Entry``, and the body schemas they refer to."""
    window = (
        f"; when appended it must lie from {time_window.describe()} the registry's clock "
        "(else 422 event-time-out-of-window)"
        if time_window is not None
        else ""
    )
    event = _object(
        ["v", "kind", "ledger", "author", "time", "nonce", "body"],
        {
            "v": {"const": 1},
            "kind": _enum(EventKind),
            "ledger": _string(max_len=128, description="the origin of the ledger it is for"),
            "author": {**HEX64, "description": "key id: hex SHA-256 of the raw public key"},
            "time": {**TIME, "description": TIME["description"] + window},
            "nonce": _string(f.HEX32, max_len=32),
            "body": {"type": "object", "description": "the body of this kind (DESIGN 3)"},
        },
        oneOf=[
            {"properties": {"kind": {"const": kind.value}, "body": ref(name)}}
            for kind, name in BODY_SCHEMA_NAMES.items()
        ],
    )
    return {
        **body_schemas(),
        "Event": event,
        "SignedEvent": _object(["event", "sig"], {"event": ref("Event"), "sig": SIGNATURE}),
        "Entry": _object(
            ["index", "prev", "received", "event"],
            {
                "index": _integer(),
                "prev": HEX64,
                "received": {**TIME, "description": "the registry's time when it appended it"},
                "event": ref("SignedEvent"),
            },
        ),
    }
