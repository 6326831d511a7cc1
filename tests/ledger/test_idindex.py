"""The event-id index: candidates, growth, collisions and its snapshot form."""

from __future__ import annotations

import hashlib

import pytest

from ledger.store.idindex import IdIndex


def _id(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest()


def test_finds_every_id_across_growth_and_reload() -> None:
    index = IdIndex(capacity=16)
    for n in range(5000):
        index.add(_id(n), n)
    assert len(index) == 5000
    again = IdIndex.from_bytes(index.to_bytes())
    for table in (index, again):
        for n in range(0, 5000, 7):
            assert n in set(table.candidates(_id(n)))
        assert list(table.candidates(_id(999_999))) == []


def test_same_prefix_yields_every_candidate() -> None:
    index = IdIndex()
    a = b"\x01" * 8 + b"a" * 24
    b = b"\x01" * 8 + b"b" * 24  # an id crafted to share the 64-bit prefix
    zero = bytes(32)  # a prefix of zero must not read as an empty slot
    index.add(a, 1)
    index.add(b, 2)
    index.add(zero, 3)
    assert sorted(index.candidates(a)) == [1, 2]
    assert list(index.candidates(zero)) == [3]


@pytest.mark.parametrize(
    "data", [b"", b"x" * 7, b"\x00" * 8 + b"\x00" * 17, b"\xff" * 8 + bytes(16 * 16)]
)
def test_rejects_malformed_snapshot_bytes(data: bytes) -> None:
    with pytest.raises(ValueError):
        IdIndex.from_bytes(data)
