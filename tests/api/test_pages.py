"""An entries page: the records cut out of the registry's layout equal the re-encoded ones."""

from __future__ import annotations

import json

import pytest

from api.errors import ProtocolError
from api.wire.pages import _cut_records, _reencoded_records, entries_page, page_records
from ledger.bodies import Task
from ledger.events import Entry
from tests.ledger.factory import World


def _entries() -> list[Entry]:
    world = World()
    world.push(world.sign("admin", world.genesis_body()))
    # Commas, escaped newlines, brackets and entry-like objects inside a record.
    tricky = {"x": 'a,"b"\n,{"event":1}', "nested": [{"event": {"event": [1, 2]}}, "]"]}
    world.push(world.sign("alice", Task(image="a/b:1", sites=("site-a",), config=tricky)))
    world.push(world.sign("alice", Task(image="a/b:1", sites=("site-b",), config={"é": "ü"})))
    return world.entries


ENTRIES = _entries()
RECORDS = [entry.canonical for entry in ENTRIES]


@pytest.mark.parametrize("count", [0, 1, len(RECORDS)])
def test_cut_records_equal_the_reencoded_ones(count: int) -> None:
    page = entries_page(RECORDS[:count], count, len(RECORDS))
    assert _cut_records(page) == _reencoded_records(page) == (RECORDS[:count], len(RECORDS))


def test_another_layout_of_the_same_page_is_read_generally() -> None:
    value = {"entries": [json.loads(r) for r in RECORDS], "next": 3, "size": 3}
    spaced = json.dumps(value, indent=1, ensure_ascii=True).encode()
    assert _cut_records(spaced) is None
    assert page_records(spaced) == (RECORDS, 3)


@pytest.mark.parametrize(
    "page",
    [
        b"",
        b"not json",
        b'{"entries":[],"next":0}',
        b'{"entries":[],"next":0,"size":-1}',
        b'{"entries":[{"a":1}],"next":1,"size":true}',
        b'{"entries":[1,\n2],"next":2,"size":2',
    ],
)
def test_malformed_pages_are_refused(page: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed entries page"):
        page_records(page)
