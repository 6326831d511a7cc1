"""Canonical bytes, strict parsing, events and entries."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.bodies import Output, Result, ResultState, Task
from ledger.canonical import canonical_bytes, parse_json
from ledger.errors import EncodingError, FormatError
from ledger.events import Entry, SignedEvent
from tests.ledger.factory import World

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_bytes_equal_the_rfc8785_reference(value: object) -> None:
    try:
        expected = rfc8785.dumps(value)
    except Exception:
        with pytest.raises(EncodingError):
            canonical_bytes(value)
        return
    assert canonical_bytes(value) == expected


@pytest.mark.parametrize(
    ("attack", "data", "message"),
    [
        ("duplicate_key", b'{"a":1,"a":2}', "duplicate object key 'a'"),
        ("nan", b'{"a":NaN}', "NaN"),
        ("infinity", b'{"a":Infinity}', "Infinity"),
        ("invalid_utf8", b'{"a":"\xff"}', "UTF-8"),
        ("truncated", b'{"a":', "not valid JSON"),
        ("huge_integer", b'{"a":' + b"9" * 5000 + b"}", "number too long"),
        ("deep_nesting", b"[" * 100_000 + b"]" * 100_000, "nested too deeply|not valid JSON"),
    ],
)
def test_parse_json_rejects(attack: str, data: bytes, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        parse_json(data)


def test_canonical_bytes_rejects_unsafe_integer_and_lone_surrogate() -> None:
    with pytest.raises(EncodingError, match="exact range"):
        canonical_bytes({"n": 2**53})
    with pytest.raises(EncodingError, match="surrogate"):
        canonical_bytes({"s": "\ud800"})


def _signed() -> tuple[World, SignedEvent]:
    world = World()
    return world, world.sign(
        "alice", Task(image="myconsortium/avg:1.2", sites=("site-a",), config={"lr": 0.1})
    )


def test_signed_event_round_trips_and_keeps_its_id() -> None:
    _, signed = _signed()
    again = SignedEvent.from_json(json.dumps(signed.to_dict()).encode())
    assert again == signed
    assert again.event.id == signed.event.id
    assert again.event.canonical == rfc8785.dumps(signed.to_dict()["event"])


def _posted(mutate: object, *, compact: bool = False) -> bytes:
    """A mutated signed event as JSON text: spaced, or compact and sorted (the canonical form
    clients post, which the parser takes on its fast path) with a plain integer config."""
    world, signed = _signed()
    if compact:
        signed = world.sign(
            "alice", Task(image="myconsortium/avg:1.2", sites=("site-a",), config={"n": 1})
        )
    doc = signed.to_dict()
    mutate(doc)  # type: ignore[operator]
    if compact:
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps(doc).encode()


ATTACKS = pytest.mark.parametrize(
    ("attack", "mutate", "message"),
    [
        ("unknown_top_field", lambda d: d.update(extra=1), "unknown field"),
        ("unknown_event_field", lambda d: d["event"].update(admin=True), "unknown field"),
        ("unknown_body_field", lambda d: d["event"]["body"].update(shell="rm -rf /"), "unknown"),
        ("missing_sig", lambda d: d.pop("sig"), "missing field"),
        ("unknown_kind", lambda d: d["event"].update(kind="grant"), "expected one of"),
        ("wrong_version", lambda d: d["event"].update(v=2), r"\[1, 1\]"),
        ("bad_time", lambda d: d["event"].update(time="yesterday"), "UTC time"),
        ("impossible_time", lambda d: d["event"].update(time="2026-02-30T00:00:00Z"), "real time"),
        ("short_nonce", lambda d: d["event"].update(nonce="abc"), "32 lowercase hex"),
        ("null_optional", lambda d: d["event"]["body"].update(label=None), "expected a string"),
        ("short_sig", lambda d: d.update(sig="AAAA"), "64-byte"),
        ("both_configs", lambda d: d["event"]["body"].update(config_blob="ab" * 32), "exactly one"),
        ("no_sites", lambda d: d["event"]["body"].update(sites=[]), "at least one"),
        ("duplicate_site", lambda d: d["event"]["body"].update(sites=["a", "a"]), "twice"),
        ("image_with_space", lambda d: d["event"]["body"].update(image="a b"), "whitespace"),
        ("image_as_option", lambda d: d["event"]["body"].update(image="-rf:1"), "invalid image"),
        ("image_path_traversal", lambda d: d["event"]["body"].update(image="../x"), "'..'"),
        ("image_upper_case", lambda d: d["event"]["body"].update(image="A/b:1"), "lowercase"),
        ("bool_as_int", lambda d: d["event"].update(v=True), "integer"),
    ],
)


@ATTACKS
def test_signed_event_rejects(attack: str, mutate: object, message: str) -> None:
    with pytest.raises((FormatError, EncodingError), match=message):
        SignedEvent.from_json(_posted(mutate))


@ATTACKS
def test_signed_event_rejects_in_canonical_form(attack: str, mutate: object, message: str) -> None:
    with pytest.raises((FormatError, EncodingError), match=message):
        SignedEvent.from_json(_posted(mutate, compact=True))


@pytest.mark.parametrize("compact", [True, False])
def test_huge_integer_in_a_post_is_an_encoding_error(compact: bool) -> None:
    raw = _posted(lambda d: d["event"]["body"].update(config={"n": 1}), compact=compact)
    raw = raw.replace(b'"n": 1', b'"n":1').replace(b'"n":1', b'"n":' + b"9" * 5000)
    with pytest.raises(EncodingError, match="number too long"):
        SignedEvent.from_json(raw)


def test_canonical_and_spaced_posts_parse_to_the_same_event() -> None:
    world = World()
    signed = world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={"n": [1, "x"]}))
    canonical = signed.canonical()
    assert canonical == rfc8785.dumps(signed.to_dict())
    fast = SignedEvent.from_json(canonical)
    slow = SignedEvent.from_json(json.dumps(signed.to_dict(), indent=2).encode())
    assert fast == slow == signed
    assert fast.event.canonical == slow.event.canonical == signed.event.canonical


def test_compact_post_with_a_duplicate_key_is_refused() -> None:
    world = World()
    signed = world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={"n": 1}))
    canonical = signed.canonical()
    # The last "sig" wins in a plain parse; the strict path must still see the duplicate.
    doubled = canonical[:-1] + b',"sig":"' + signed.sig_b64.encode() + b'"}'
    with pytest.raises(EncodingError, match="duplicate object key 'sig'"):
        SignedEvent.from_json(doubled)


@pytest.mark.parametrize("compact", [True, False])
def test_deeply_nested_config_is_refused(compact: bool) -> None:
    deep: object = 1
    for _ in range(40):
        deep = {"a": deep}
    with pytest.raises(EncodingError, match="deeper than"):
        SignedEvent.from_json(
            _posted(lambda d: d["event"]["body"].update(config=deep), compact=compact)
        )


def test_entry_canonical_bytes_equal_jcs_of_the_whole_entry() -> None:
    world, signed = _signed()
    genesis = world.push(world.sign("admin", world.genesis_body()))
    result = Result(
        task=signed.event.id,
        state=ResultState.COMPLETED,
        outputs=(Output(name="o.txt", sha256="cd" * 32, size=9),),
        exit_code=0,
        image_digest="sha256:" + "ef" * 32,
        reason='é ünïcode "quotes" \\ and \n newline',
    )
    for entry in [genesis, world.push(signed), world.push(world.sign("site-a", result))]:
        assert entry.canonical == rfc8785.dumps(entry.to_dict())
        assert Entry.from_canonical(entry.canonical) == entry


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda b: b.replace(b'"index":', b'"index" :'),  # spacing
        lambda b: b[:-1] + b',"index":1}',  # duplicate key
        lambda b: json.dumps(json.loads(b), sort_keys=False).encode(),  # not JCS
    ],
)
def test_entry_refuses_non_canonical_stored_bytes(rewrite: object) -> None:
    world, signed = _signed()
    world.push(world.sign("admin", world.genesis_body()))
    entry = world.push(signed)
    with pytest.raises((EncodingError, FormatError)):
        Entry.from_canonical(rewrite(entry.canonical))  # type: ignore[operator]
