"""The OpenAPI document describes events as the ledger parses them: every kind's example body
validates against the document's schema, and bodies the parser refuses, the schema refuses too."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from api.registry.openapi import document
from ledger.bodies import (
    BlobRef,
    Body,
    Cancel,
    Consortium,
    Decision,
    EventId,
    EventKind,
    Limits,
    Member,
    MemberAction,
    MemberSpec,
    Output,
    Result,
    ResultState,
    Review,
    ReviewPolicy,
    Role,
    Status,
    StatusState,
    Submission,
    Task,
    Transfer,
)
from ledger.errors import EncodingError, FormatError
from ledger.events import SignedEvent
from tests.ledger.factory import World, key
from tests.ledger.test_reference import VALID

AGE = "age1" + "q" * 58
SHA = "ab" * 32
TASK = EventId("cd" * 32)
DOC = document(max_body=1024 * 1024, max_blob=1024, max_limit=1000, max_wait=30)


def validator(name: str) -> jsonschema.protocols.Validator:
    """A validator of ``#/components/schemas/<name>`` that resolves refs within the document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOC["components"]}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


SIGNED_EVENT = validator("SignedEvent")
ENTRY = validator("Entry")

EXAMPLES: list[tuple[str, str, Body]] = [
    ("consortium", "admin", World().genesis_body()),
    ("consortium_with_organizations", "admin", World(reviewers=True).genesis_body()),
    (
        "member_add_reviewer_with_org",
        "admin",
        Member(
            action=MemberAction.ADD,
            name="rhea",
            role=Role.REVIEWER,
            public_key=key("rhea").public.b64(),
            org="umc-x",
        ),
    ),
    (
        "submission",
        "alice",
        Submission(
            image="127.0.0.1:5000/pht/avg:2@sha256:" + SHA,
            name="Average",
            version="2.0.1",
            description="Mean of a column.\nNo free text leaves the site.",
            source="https://git.example.org/pht/avg/-/tree/v2.0.1?x=1#top",
        ),
    ),
    (
        "submission_with_config_schema",
        "alice",
        Submission(
            image="myconsortium/avg@sha256:" + SHA,
            name="Average",
            version="3",
            description="",
            source="http://git.example/avg",
            config_schema={"type": "object", "required": ["column"]},
        ),
    ),
    ("review_approve", "rob", Review(submission=TASK, decision=Decision.APPROVE, note="ok")),
    ("review_revoke", "ray", Review(submission=TASK, decision=Decision.REVOKE, note="")),
    ("review_policy", "admin", ReviewPolicy(approvals=3, organizations=2)),
    (
        "consortium_member_with_contact",
        "admin",
        Consortium(
            name="c",
            origin="pht.example/x",
            log_key="pht.example/x+01234567+AAAA",
            members=(
                MemberSpec(
                    name="site-z",
                    role=Role.SITE,
                    public_key=key("site-z").public.b64(),
                    encryption_key=AGE,
                    file_service="https://site-z.example:8443/files",
                ),
            ),
        ),
    ),
    (
        "member_add",
        "admin",
        Member(
            action=MemberAction.ADD,
            name="bob",
            role=Role.RESEARCHER,
            public_key=key("bob").public.b64(),
        ),
    ),
    (
        "member_rekey",
        "site-a",
        Member(
            action=MemberAction.REKEY,
            name="site-a",
            role=Role.SITE,
            public_key=key("site-a").public.b64(),
            encryption_key=AGE,
            file_service="http://127.0.0.1:9000",
        ),
    ),
    ("task_inline", "alice", Task(image="myconsortium/avg:1.2", sites=("site-a",), config={})),
    (
        "task_every_field",
        "alice",
        Task(
            image="127.0.0.1:5000/pht/avg:2@sha256:" + SHA,
            sites=("site-a", "site-b"),
            config_blob=SHA,
            limits=Limits(timeout_s=60, memory_mb=64, cpu_millis=500),
            parent=TASK,
            label="iteration 2",
            recipient="site-c",
            deliver=True,
            inputs=(TASK,),
        ),
    ),
    ("cancel", "alice", Cancel(task=TASK, reason="changed my mind")),
    ("status", "site-a", Status(task=TASK, state=StatusState.STARTED, reason="running")),
    ("result_refused", "site-a", Result(task=TASK, state=ResultState.REJECTED, reason="no")),
    (
        "result_every_field",
        "site-a",
        Result(
            task=TASK,
            state=ResultState.COMPLETED,
            outputs=(
                Output(name="out.csv", sha256=SHA, size=10),
                Output(name="model.age", sha256=SHA, size=99, delivered_to="site-c"),
            ),
            exit_code=0,
            image_digest="sha256:" + SHA,
            started="2026-11-25T17:00:00.5Z",
            finished="2026-11-25T17:00:01.123456Z",
            log=BlobRef(sha256=SHA, size=7),
            reason="ok",
        ),
    ),
    (
        "transfer",
        "site-c",
        Transfer(sender="site-a", recipient="site-c", task=TASK, sha256=SHA, size=3),
    ),
]


@pytest.mark.parametrize(
    ("author", "body"), [e[1:] for e in EXAMPLES], ids=[e[0] for e in EXAMPLES]
)
def test_each_kinds_example_validates_against_the_document(author: str, body: Body) -> None:
    world = World(reviewers=True)
    signed = world.sign(author, body)
    SIGNED_EVENT.validate(signed.to_dict())
    ENTRY.validate(world.push(signed).to_dict())


@pytest.mark.parametrize("text", [v[0] for v in VALID])
def test_every_image_the_parser_accepts_fits_the_documented_pattern(text: str) -> None:
    world = World()
    SIGNED_EVENT.validate(world.sign("alice", Task(image=text, sites=("a",), config={})).to_dict())


def _task(mutate: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda signed: mutate(signed["event"]["body"])


def _event(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda signed: signed["event"].update({field: value})


# (attack, mutation of a signed task event's JSON); the parser and the schema both refuse each.
REFUSED: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("unknown_body_field", _task(lambda b: b.update(shell="rm -rf /"))),
    ("missing_sites", _task(lambda b: b.pop("sites"))),
    ("both_configs", _task(lambda b: b.update(config_blob=SHA))),
    ("no_config", _task(lambda b: b.pop("config"))),
    ("image_as_option", _task(lambda b: b.update(image="-rf:1"))),
    ("image_path_traversal", _task(lambda b: b.update(image="../../etc/passwd"))),
    ("image_upper_case", _task(lambda b: b.update(image="UPPER/case:1"))),
    ("image_double_colon", _task(lambda b: b.update(image="busybox::1"))),
    ("image_url", _task(lambda b: b.update(image="http://evil/x:1"))),
    ("image_truncated_digest", _task(lambda b: b.update(image="busybox@sha256:xyz"))),
    ("deliver_false", _task(lambda b: b.update(deliver=False, recipient="site-c"))),
    ("deliver_without_recipient", _task(lambda b: b.update(deliver=True))),
    ("no_sites", _task(lambda b: b.update(sites=[]))),
    ("site_named_twice", _task(lambda b: b.update(sites=["site-a", "site-a"]))),
    ("site_name_upper_case", _task(lambda b: b.update(sites=["Site-A"]))),
    ("empty_inputs", _task(lambda b: b.update(inputs=[]))),
    ("null_label", _task(lambda b: b.update(label=None))),
    ("limits_too_long", _task(lambda b: b.update(limits={"timeout_s": 86400 * 7 + 1}))),
    ("status_body_in_a_task", _task(lambda b: (b.clear(), b.update(task=SHA, state="started")))),
    ("month_13", _event("time", "2026-13-01T00:00:00Z")),
    ("hour_24", _event("time", "2026-11-25T24:00:00Z")),
    ("other_script_digits", _event("time", "\u0662\u0660\u0662\u0666-11-25T17:00:00Z")),
    ("local_time", _event("time", "2026-11-25T17:00:00+01:00")),
    ("seven_fraction_digits", _event("time", "2026-11-25T17:00:00.1234567Z")),
    ("upper_case_nonce", _event("nonce", "A" * 32)),
    ("unknown_kind", _event("kind", "grant")),
    ("version_2", _event("v", 2)),
    ("short_signature", lambda signed: signed.update(sig="AAAA")),
]


def _review_event(kind: str, body: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda signed: signed["event"].update(kind=kind, body=body)


_SUBMISSION = {
    "image": "myconsortium/avg@sha256:" + SHA,
    "name": "Average",
    "version": "1",
    "description": "d",
    "source": "https://git.example/avg",
}
REFUSED += [
    (
        "submission_of_an_unpinned_tag",
        _review_event("submission", {**_SUBMISSION, "image": "a/b:1"}),
    ),
    ("submission_with_an_empty_name", _review_event("submission", {**_SUBMISSION, "name": " "})),
    ("submission_source_not_a_url", _review_event("submission", {**_SUBMISSION, "source": "x"})),
    (
        "submission_schema_not_an_object",
        _review_event("submission", {**_SUBMISSION, "config_schema": []}),
    ),
    (
        "review_unknown_decision",
        _review_event("review", {"submission": SHA, "decision": "veto", "note": ""}),
    ),
    ("policy_zero_approvals", _review_event("review_policy", {"approvals": 0, "organizations": 0})),
    (
        "org_on_a_revoke",
        _review_event(
            "member",
            {
                "action": "revoke",
                "name": "bob",
                "role": "researcher",
                "public_key": key("bob").public.b64(),
                "org": "x",
            },
        ),
    ),
]


@pytest.mark.parametrize("mutate", [r[1] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_schema_refuses_what_the_parser_refuses(mutate: Callable[[dict[str, Any]], None]) -> None:
    world = World()
    value = world.sign("alice", Task(image="busybox:1", sites=("site-a",), config={})).to_dict()
    SIGNED_EVENT.validate(value)
    hostile = copy.deepcopy(value)
    mutate(hostile)
    with pytest.raises((FormatError, EncodingError)):
        SignedEvent.from_dict(hostile)
    assert not SIGNED_EVENT.is_valid(hostile)


def test_each_kind_has_its_own_body_schema() -> None:
    schemas = DOC["components"]["schemas"]
    branches = schemas["Event"]["oneOf"]
    kinds = {b["properties"]["kind"]["const"]: b["properties"]["body"]["$ref"] for b in branches}
    assert len(kinds) == len(EventKind)
    for ref in kinds.values():
        body = schemas[ref.rsplit("/", 1)[1]]
        assert body["additionalProperties"] is False and body["type"] == "object"
