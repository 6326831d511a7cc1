"""Reading the log through C2SP tlog-tiles, held to a signed checkpoint (pure: bytes in, verdicts
out; the fetching is the client's, :mod:`api.client.tiles`).

A reader of a checkpoint of ``size`` entries needs, besides the entry bundles:

- the level-1 hash tiles (:func:`level1_tiles`): one hash per full level-0 tile, the Merkle Tree
  Hash of its 256 entries, so 1/256 of the tree;
- the entries of the last, partial bundle (``size % 256`` of them).

From these :class:`TileCheck` rebuilds the checkpoint's root (RFC 9162 MTH: every split of a tree
of more than 256 leaves falls on a multiple of 256, so the tree above the tiles is made of level-1
hashes and the partial tail). Once that is the signed root, every full bundle is held to its own
level-1 hash: an entry that differs from the one the checkpoint commits to changes that hash, so a
registry (or a cache) cannot slip a wrong entry, a missing one or an extra one through. Each
verdict is an :class:`~ledger.errors.UnsignedEntriesError` naming the bundle and its entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.checkpoint import Checkpoint
from ledger.errors import UnsignedEntriesError
from ledger.merkle import HASH_SIZE, leaf_hash, node_hash, root_from_leaf_hashes
from ledger.tiles import WIDTH, Tile

__all__ = ["TileCheck", "bundle_tile", "level1_tiles", "split_bundle"]


def bundle_tile(index: int, size: int) -> Tile:
    """The entry bundle ``index`` of a log of ``size`` (partial when it is the last one)."""
    return Tile(None, index, min(WIDTH, size - index * WIDTH))


def level1_tiles(size: int) -> list[Tile]:
    """The level-1 hash tiles that cover every full level-0 tile of a log of ``size``."""
    full = size // WIDTH
    return [Tile(1, n, min(WIDTH, full - n * WIDTH)) for n in range(-(-full // WIDTH))]


def split_bundle(data: bytes, tile: Tile) -> list[bytes]:
    """The entries of the bundle ``tile``, served as ``data`` (each behind its big-endian uint16
    length). Raises :class:`UnsignedEntriesError` unless it holds exactly ``tile.width`` entries
    and nothing more."""
    out: list[bytes] = []
    at, end = 0, len(data)
    first = tile.index * WIDTH
    while at < end and len(out) < tile.width:
        if at + 2 > end:
            break
        length = int.from_bytes(data[at : at + 2], "big")
        at += 2
        if at + length > end:
            break
        out.append(data[at : at + length])
        at += length
    if len(out) != tile.width or at != end:
        raise UnsignedEntriesError(
            f"entry bundle {tile.index} (entries {first}..{first + tile.width - 1}) holds "
            f"{len(out)} whole entries{' and trailing bytes' if at != end else ''}, not the "
            f"{tile.width} the checkpoint covers",
            index=first + len(out),
        )
    return out


@dataclass(frozen=True, slots=True)
class TileCheck:
    """The level-1 hashes of a checkpoint's tree, proven to rebuild its root: a full bundle is
    the signed one when its entries hash to its level-1 hash (:meth:`check`)."""

    size: int
    tile_roots: tuple[bytes, ...]

    @classmethod
    def build(
        cls, checkpoint: Checkpoint, level1: Sequence[bytes], tail: Sequence[bytes]
    ) -> TileCheck:
        """Hold the level-1 hash tiles ``level1`` (as served, in order) and the entries of the
        partial last bundle ``tail`` to ``checkpoint`` (already verified).

        Raises :class:`UnsignedEntriesError` when they are not the tree it signed."""
        size = checkpoint.size
        full = size // WIDTH
        joined = b"".join(level1)
        if len(joined) != full * HASH_SIZE or len(tail) != size - full * WIDTH:
            raise UnsignedEntriesError(
                f"the tiles served hold {len(joined) // HASH_SIZE} level-1 hashes and "
                f"{len(tail)} tail entries; a checkpoint of size {size} has {full} and "
                f"{size - full * WIDTH}",
                index=full * WIDTH,
            )
        roots = tuple(joined[i : i + HASH_SIZE] for i in range(0, len(joined), HASH_SIZE))
        leaves = [leaf_hash(entry) for entry in tail]
        if size == 0 or _root(roots, leaves, full * WIDTH, 0, size) != checkpoint.root:
            raise UnsignedEntriesError(
                f"the hash tiles and the last entry bundle served do not hash to the root of "
                f"the checkpoint of size {size}: the registry serves another tree than it signed",
                index=full * WIDTH,
            )
        return cls(size, roots)

    def check(self, index: int, entries: Sequence[bytes]) -> None:
        """Bundle ``index`` (full) is the signed one. Raises :class:`UnsignedEntriesError`."""
        first = index * WIDTH
        if index >= len(self.tile_roots) or len(entries) != WIDTH:
            raise UnsignedEntriesError(
                f"entry bundle {index} is not a full bundle of the checkpoint of size {self.size}",
                index=first,
            )
        if root_from_leaf_hashes([leaf_hash(entry) for entry in entries]) != self.tile_roots[index]:
            raise UnsignedEntriesError(
                f"entry bundle {index} (entries {first}..{first + WIDTH - 1}) does not hash to "
                f"the tree of the checkpoint of size {self.size}: the registry served entries "
                "other than the ones it signed",
                index=first,
            )


def _root(roots: Sequence[bytes], tail: Sequence[bytes], base: int, lo: int, hi: int) -> bytes:
    """MTH of leaves ``lo``..``hi - 1``: full level-0 tiles by their level-1 hash, the leaves
    from ``base`` on (the partial tail) by their leaf hashes."""
    n = hi - lo
    if lo >= base:
        return root_from_leaf_hashes(tail[lo - base : hi - base])
    if n == WIDTH:
        return roots[lo // WIDTH]
    k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two below n
    return node_hash(_root(roots, tail, base, lo, lo + k), _root(roots, tail, base, lo + k, hi))
