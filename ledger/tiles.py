"""The ledger as C2SP tlog-tiles (pure: a tree and payloads in, tile bytes out).

Paths, relative to the registry's ``/v1/`` prefix (``/v1/checkpoint`` is the checkpoint)::

    tile/<L>/<N>[.p/<W>]        hash tile: 256 (or W) Merkle Tree Hashes of level L
    tile/entries/<N>[.p/<W>]    entry bundle: the entries under level-0 tile N, each with
                                its length as a big-endian uint16 in front

``<N>`` is written in zero-padded 3-digit elements, every one but the last prefixed with ``x``
(1234067 is ``x001/x234/067``); ``<W>`` is 1..255 for a partial tile, absent for a full one.
Only the canonical spelling of a path is accepted, so each tile has one URL.

Hash ``i`` of tile ``N`` at level ``L`` is MTH(D[(N*256+i) * 256**L : (N*256+i+1) * 256**L]).
A tile is served once every hash it holds exists: its content never changes afterwards (a partial
tile of width W is the first W hashes of the full tile), so every tile is immutable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import TileEntryTooLargeError, UnknownTileError
from ledger.merkle import MerkleTree

WIDTH = 256
HEIGHT = 8  # levels of the tree per tile level
MAX_LEVEL = 63
MAX_ENTRY = 0xFFFF  # an entry bundle frames each entry with a uint16 length

_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_INNER = re.compile(r"x[0-9]{3}")
_LAST = re.compile(r"[0-9]{3}")


@dataclass(frozen=True, slots=True)
class Tile:
    """A tile's coordinates: ``level`` None is the entry bundle of level-0 tile ``index``."""

    level: int | None
    index: int
    width: int  # WIDTH for a full tile

    @property
    def full(self) -> bool:
        return self.width == WIDTH

    def needs(self) -> int:
        """The tree size from which the tile's every hash (or entry) exists."""
        return (self.index * WIDTH + self.width) << (HEIGHT * (self.level or 0))


def parse(path: str) -> Tile:
    """The tile ``path`` (``<L>/<N>[.p/<W>]`` or ``entries/<N>[.p/<W>]``) names; UnknownTileError
    for anything else, non-canonical spellings included."""
    parts = path.split("/")
    head, rest = parts[0], parts[1:]
    width = WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= WIDTH:
            raise UnknownTileError(f"tile/{path[:80]}: a partial width is 1..255")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2].removesuffix(".p")]
    if head == "entries":
        level = None
    elif _LEVEL.fullmatch(head) and int(head) <= MAX_LEVEL:
        level = int(head)
    else:
        raise UnknownTileError(f"tile/{path[:80]}: a level is 0..63 or 'entries'")
    if (
        not rest
        or not all(_INNER.fullmatch(p) for p in rest[:-1])
        or not _LAST.fullmatch(rest[-1])
        or (len(rest) > 1 and rest[0] == "x000")
    ):
        raise UnknownTileError(f"tile/{path[:80]}: not a tile index (e.g. x001/x234/067)")
    index = 0
    for part in rest:
        index = index * 1000 + int(part.removeprefix("x"))
    return Tile(level, index, width)


def path(tile: Tile) -> str:
    """The canonical path of ``tile`` (what :func:`parse` reads back)."""
    groups: list[int] = []
    index = tile.index
    while True:
        groups.append(index % 1000)
        index //= 1000
        if index == 0:
            break
    groups.reverse()
    digits = "/".join([f"x{g:03d}" for g in groups[:-1]] + [f"{groups[-1]:03d}"])
    head = "entries" if tile.level is None else str(tile.level)
    return f"{head}/{digits}" + ("" if tile.full else f".p/{tile.width}")


def hash_tile(tree: MerkleTree, tile: Tile) -> bytes:
    """The hashes of ``tile`` (a hash tile), concatenated."""
    assert tile.level is not None
    _require(tree.size, tile)
    first = tile.index * WIDTH
    depth = HEIGHT * tile.level
    return b"".join(tree.subtree(depth, first + i) for i in range(tile.width))


def entries_range(size: int, tile: Tile) -> tuple[int, int]:
    """The entries (start, stop) of the entry bundle ``tile`` in a ledger of ``size``."""
    _require(size, tile)
    start = tile.index * WIDTH
    return start, start + tile.width


def bundle(payloads: Sequence[bytes], first: int) -> bytes:
    """The entry bundle of ``payloads`` (entry ``first`` on)."""
    out = bytearray()
    for n, payload in enumerate(payloads, first):
        if len(payload) > MAX_ENTRY:
            raise TileEntryTooLargeError(
                f"entry {n} has {len(payload)} bytes, more than an entry bundle can frame "
                f"({MAX_ENTRY}); read it at /v1/events/{n}"
            )
        out += len(payload).to_bytes(2, "big") + payload
    return bytes(out)


def _require(size: int, tile: Tile) -> None:
    if tile.needs() > size:
        raise UnknownTileError(
            f"the ledger of {size} entries does not hold every entry tile "
            f"{tile.level if tile.level is not None else 'entries'}/{tile.index} covers yet"
        )
