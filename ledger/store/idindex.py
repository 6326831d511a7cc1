"""A compact index from event ids to entry indexes, for recognising a re-posted event.

Posting the same signed event twice must return the first entry, so the registry needs "is this
event id in the ledger, and where?" for every entry ever appended. A Python ``dict`` of a million
32-byte keys costs over 100 MB and a second to rebuild; this open-addressing table of 64-bit id
prefixes and 64-bit entry indexes costs 16 bytes a slot at a load factor of at most 1/2 (at most
64 MB for a million entries), and snapshots store its raw arrays, so loading it is one read with
no rehashing.

A prefix is only a candidate: ``candidates`` yields every index whose id shares the 64-bit
prefix, and the caller confirms the full id against the entry (collisions cost a read, never a
wrong answer).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

EMPTY = 0
_WORD = "Q"


def _key(event_id: bytes) -> int:
    key = int.from_bytes(event_id[:8], "little")
    return key or 1  # 0 marks an empty slot


class IdIndex:
    __slots__ = ("_count", "_keys", "_mask", "_values")

    def __init__(self, capacity: int = 1 << 12) -> None:
        size = 1 << max(4, (capacity - 1).bit_length())
        self._keys = array(_WORD, bytes(8 * size))
        self._values = array(_WORD, bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, event_id: bytes, index: int) -> None:
        if 2 * (self._count + 1) > len(self._keys):
            self._grow()
        self._put(_key(event_id), index)
        self._count += 1

    def candidates(self, event_id: bytes) -> Iterator[int]:
        """Entry indexes whose event id may be ``event_id`` (same 64-bit prefix)."""
        key = _key(event_id)
        keys, mask = self._keys, self._mask
        slot = key & mask
        while keys[slot] != EMPTY:
            if keys[slot] == key:
                yield self._values[slot]
            slot = (slot + 1) & mask

    def _put(self, key: int, index: int) -> None:
        keys, mask = self._keys, self._mask
        slot = key & mask
        while keys[slot] != EMPTY:
            slot = (slot + 1) & mask
        keys[slot] = key
        self._values[slot] = index

    def _grow(self) -> None:
        old_keys, old_values = self._keys, self._values
        size = 2 * len(old_keys)
        self._keys = array(_WORD, bytes(8 * size))
        self._values = array(_WORD, bytes(8 * size))
        self._mask = size - 1
        for key, value in zip(old_keys, old_values, strict=True):
            if key != EMPTY:
                self._put(key, value)

    def to_bytes(self) -> bytes:
        return self._count.to_bytes(8, "little") + self._keys.tobytes() + self._values.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> IdIndex:
        """Reload :meth:`to_bytes`; raises ValueError for a malformed buffer."""
        body = len(data) - 8
        size = body // 16
        if body < 0 or body % 16 or size < 16 or size & (size - 1):
            raise ValueError(f"an id index of {len(data)} bytes is malformed")
        index = cls.__new__(cls)
        index._count = int.from_bytes(data[:8], "little")
        index._keys = array(_WORD)
        index._keys.frombytes(data[8 : 8 + 8 * size])
        index._values = array(_WORD)
        index._values.frombytes(data[8 + 8 * size :])
        index._mask = size - 1
        if 2 * index._count > size:
            raise ValueError("an id index holds more ids than its load factor allows")
        return index
