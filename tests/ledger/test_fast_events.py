"""The fast paths of :mod:`ledger.events` equal their general twins (``ledger/_fast_events.py``).

Every kind of entry is spliced, read fast and read generally; then entries and posts are
tampered with, by a table of attacks on the fast parser's grammar and by random byte edits,
and whatever the fast path accepts must be exactly what the general path builds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger._fast_events import read_entry, read_posted
from ledger.bodies import (
    Cancel,
    Decision,
    EventKind,
    Member,
    MemberAction,
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
    WitnessPolicySet,
)
from ledger.canonical import canonical_bytes, parse_json
from ledger.errors import LedgerError
from ledger.events import Entry, SignedEvent
from tests.ledger.factory import World, key


def _entries() -> list[Entry]:
    """One entry of every kind, and one whose body needs JSON escapes (the general path's)."""
    world = World(reviewers=True)
    world.push(world.sign("admin", world.genesis_body()))
    member = Member(
        action=MemberAction.ADD,
        name="bob",
        role=Role.RESEARCHER,
        public_key=key("bob").public.b64(),
    )
    world.push(world.sign("admin", member))
    task = world.push(
        world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={"n": [1, "x", None]}))
    )
    task_id = task.event.event.id
    for author, body in [
        ("site-a", Status(task=task_id, state=StatusState.STARTED)),
        (
            "site-a",
            Transfer(sender="site-a", recipient="site-b", task=task_id, sha256="ab" * 32, size=3),
        ),
        (
            "site-a",
            Result(
                task=task_id,
                state=ResultState.COMPLETED,
                outputs=(Output(name="o.txt", sha256="cd" * 32, size=9),),
                exit_code=0,
            ),
        ),
        ("alice", Cancel(task=task_id, reason="not needed")),
        ("admin", ReviewPolicy(approvals=3, organizations=2)),
        ("admin", WitnessPolicySet(policy=f"log {world.log_key_text}\nquorum none\n")),
        (
            "alice",
            Submission(
                image="a/b@sha256:" + "ef" * 32,
                name="Average",
                version="1.0",
                description="the mean of a column",
                source="https://git.example/avg?ref=v1#readme",
                config_schema={"type": "object"},
            ),
        ),
        ("rob", Review(submission=task_id, decision=Decision.APPROVE, note="read it")),
        ("site-b", Result(task=task_id, state=ResultState.FAILED, reason='é "quoted" \\ \n')),
    ]:
        world.push(world.sign(author, body))
    assert {entry.event.event.kind for entry in world.entries} == set(EventKind)
    return world.entries


ENTRIES = _entries()
USUAL = ENTRIES[:-1]
ESCAPED = ENTRIES[-1]


def _entry_outcome(read: Callable[[bytes], Entry], data: bytes) -> tuple[Any, ...]:
    try:
        entry = read(data)
    except LedgerError as exc:
        return ("refused", type(exc).__name__)
    event = entry.event.event
    return (entry, entry.canonical, entry.hash, event.canonical, event.id, entry.event.sig)


def _post_outcome(data: bytes) -> tuple[Any, ...] | None:
    """What the fast post reader makes of ``data`` (None: it declines), and the general path."""
    fast = read_posted(data, lambda value: SignedEvent.from_dict(value, plain=True))
    if fast is None:
        return None
    return (fast, fast.event.canonical, fast.event.id, fast.canonical())


def _general_post(data: bytes) -> tuple[Any, ...]:
    general = SignedEvent.from_dict(parse_json(data))
    return (general, general.event.canonical, general.event.id, general.canonical())


def test_splices_equal_jcs_of_every_kind() -> None:
    for entry in ENTRIES:
        signed = entry.event
        assert signed.canonical() == canonical_bytes(signed.to_dict())
        assert signed.canonical() == rfc8785.dumps(signed.to_dict())
        assert entry.canonical == canonical_bytes(entry.to_dict())
        assert entry.canonical == rfc8785.dumps(entry.to_dict())


def test_following_builds_what_the_constructor_builds() -> None:
    for entry in ENTRIES:
        again = Entry.following(
            index=entry.index, prev=entry.prev, received=entry.received, event=entry.event
        )
        assert (again, again.canonical, again.hash) == (entry, entry.canonical, entry.hash)


def test_usual_entries_take_the_fast_path_and_escaped_ones_do_not() -> None:
    assert all(read_entry(entry.canonical) is not None for entry in USUAL)
    assert read_entry(ESCAPED.canonical) is None
    for entry in ENTRIES:
        assert _entry_outcome(Entry.from_canonical, entry.canonical) == _entry_outcome(
            Entry.parse_canonical, entry.canonical
        )


def test_usual_posts_take_the_fast_path_and_escaped_ones_do_not() -> None:
    for entry in USUAL:
        data = entry.event.canonical()
        assert _post_outcome(data) == _general_post(data)
    assert _post_outcome(ESCAPED.event.canonical()) is None


TASK = ENTRIES[2].canonical


def _swap_last_sig_digit(data: bytes) -> bytes:
    cut = data.index(b'=="},"index"')
    return data[: cut - 1] + b"B" + data[cut:]  # "B" leaves stray bits in the last byte


def _sub(pattern: bytes, replacement: bytes, data: bytes) -> bytes:
    return re.sub(pattern, replacement, data, count=1)


@pytest.mark.parametrize(
    ("attack", "data"),
    [
        ("escaped_ledger_char", TASK.replace(b'"ledger":"p', b'"ledger":"\\u0070')),
        ("upper_case_author", _sub(rb'"author":"[0-9a-f]', b'"author":"A', TASK)),
        ("leading_zero_index", TASK.replace(b'"index":2', b'"index":02')),
        ("index_beyond_2_53", TASK.replace(b'"index":2', b'"index":9007199254740993')),
        ("time_without_zone", TASK.replace(b'Z","v":1', b'","v":1')),
        ("month_13", _sub(rb'"received":"([0-9]{4})-[0-9]{2}', rb'"received":"\1-13', TASK)),
        ("stray_signature_bits", _swap_last_sig_digit(TASK)),
        ("spaced_body", TASK.replace(b'"config":{"n"', b'"config": {"n"')),
        ("duplicate_body_key", TASK.replace(b'"image":"a/b:1"', b'"image":"a/b:1","image":"c:2"')),
        ("unknown_kind", TASK.replace(b'"kind":"task"', b'"kind":"tusk"')),
        ("body_of_another_kind", TASK.replace(b'"kind":"task"', b'"kind":"cancel"')),
        ("float_in_body", TASK.replace(b'[1,"x"', b'[1.0,"x"')),
        ("trailing_newline", TASK + b"\n"),
        ("version_two", TASK.replace(b'"v":1}', b'"v":2}')),
    ],
)
def test_entry_reader_refuses_like_the_general_path(attack: str, data: bytes) -> None:
    assert data != TASK, attack
    assert read_entry(data) is None
    outcome = _entry_outcome(Entry.from_canonical, data)
    assert outcome[0] == "refused"
    assert outcome == _entry_outcome(Entry.parse_canonical, data)


edits = st.tuples(
    st.sampled_from(range(len(ENTRIES))),
    st.sampled_from(["replace", "insert", "delete"]),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.binary(min_size=1, max_size=3) | st.sampled_from([b'"', b"\\", b"0", b"a", b"A", b" "]),
)


def _edit(data: bytes, how: str, where: float, text: bytes) -> bytes:
    at = int(where * len(data))
    if how == "replace":
        return data[:at] + text + data[at + len(text) :]
    if how == "insert":
        return data[:at] + text + data[at:]
    return data[:at] + data[at + len(text) :]


@settings(max_examples=600, deadline=None)
@given(edits)
def test_entry_reader_agrees_with_the_general_path(edit: tuple[int, str, float, bytes]) -> None:
    which, how, where, text = edit
    data = _edit(ENTRIES[which].canonical, how, where, text)
    assert _entry_outcome(Entry.from_canonical, data) == _entry_outcome(Entry.parse_canonical, data)


@settings(max_examples=600, deadline=None)
@given(edits)
def test_posted_reader_agrees_with_the_general_path(edit: tuple[int, str, float, bytes]) -> None:
    which, how, where, text = edit
    data = _edit(ENTRIES[which].event.canonical(), how, where, text)
    fast = _post_outcome(data)
    if fast is not None:
        assert fast == _general_post(data)
