"""Holding C2SP entry bundles to a signed checkpoint (:mod:`ledger.tileread`), against the
registry's own Merkle tree and hash tiles (:mod:`ledger.merkle`, :mod:`ledger.tiles`)."""

from __future__ import annotations

import pytest

from ledger import tiles
from ledger.checkpoint import Checkpoint
from ledger.errors import UnsignedEntriesError
from ledger.merkle import MerkleTree, leaf_hash
from ledger.tileread import TileCheck, bundle_tile, level1_tiles, split_bundle

ENTRIES = [b'{"n":%d}' % n for n in range(70_000)]
TREE = MerkleTree()
TREE.extend(leaf_hash(e) for e in ENTRIES)


def check_for(size: int, entries: list[bytes] = ENTRIES) -> TileCheck:
    level1 = [tiles.hash_tile(TREE, tile) for tile in level1_tiles(size)]
    tail = entries[size // 256 * 256 : size]
    return TileCheck.build(Checkpoint(origin="o", size=size, root=TREE.root(size)), level1, tail)


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537, 69999])
def test_hash_tiles_and_tail_rebuild_the_signed_root(size: int) -> None:
    check = check_for(size)
    for n in range(size // 256):
        check.check(n, ENTRIES[n * 256 : (n + 1) * 256])


def test_rejects_an_entry_swapped_within_a_bundle() -> None:
    check = check_for(1000)
    bundle = ENTRIES[256:512]
    bundle[3], bundle[4] = bundle[4], bundle[3]
    with pytest.raises(UnsignedEntriesError, match=r"entry bundle 1 \(entries 256..511\)"):
        check.check(1, bundle)


def test_rejects_a_bundle_from_another_position() -> None:
    with pytest.raises(UnsignedEntriesError, match="entry bundle 2"):
        check_for(1000).check(2, ENTRIES[0:256])


@pytest.mark.parametrize(
    "tail", [ENTRIES[768:999], ENTRIES[768:1001], [*ENTRIES[768:999], b"{}"]], ids=str
)
def test_rejects_a_tail_that_is_not_the_signed_one(tail: list[bytes]) -> None:
    level1 = [tiles.hash_tile(TREE, tile) for tile in level1_tiles(1000)]
    with pytest.raises(UnsignedEntriesError):
        TileCheck.build(Checkpoint(origin="o", size=1000, root=TREE.root(1000)), level1, tail)


def test_rejects_hash_tiles_of_another_tree() -> None:
    level1 = [bytes(32) + tiles.hash_tile(TREE, level1_tiles(1000)[0])[32:]]
    with pytest.raises(UnsignedEntriesError, match="do not hash to the root"):
        TileCheck.build(
            Checkpoint(origin="o", size=1000, root=TREE.root(1000)), level1, ENTRIES[768:1000]
        )


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing
        tiles.bundle(ENTRIES[:2], 0),  # too few
        tiles.bundle(ENTRIES[:3], 0)[:-1],  # the last entry cut short
        tiles.bundle(ENTRIES[:3], 0) + b"\x00",  # trailing bytes
        tiles.bundle(ENTRIES[:4], 0),  # too many
    ],
    ids=["empty", "too_few", "truncated", "trailing_bytes", "too_many"],
)
def test_split_bundle_rejects_bad_framing(data: bytes) -> None:
    with pytest.raises(UnsignedEntriesError, match="entry bundle 0"):
        split_bundle(data, bundle_tile(0, 3))


def test_split_bundle_reads_what_the_registry_frames() -> None:
    assert (
        split_bundle(tiles.bundle(ENTRIES[256:300], 256), bundle_tile(1, 300)) == ENTRIES[256:300]
    )


@pytest.mark.parametrize(
    "tile", [tiles.Tile(None, 0, 1), tiles.Tile(3, 1234067, 256), tiles.Tile(0, 1000, 17)]
)
def test_tile_paths_read_back(tile: tiles.Tile) -> None:
    assert tiles.parse(tiles.path(tile)) == tile
