"""The RFC 9162 section 2.1 Merkle tree the registry keeps: incremental, in memory, with the root
and the inclusion and consistency proofs of any size so far.

Pure and standard-library only. The tree hash is exactly RFC 9162's MTH, from the hashes of
:mod:`ledger.proofs`, whose verifiers are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ledger.proofs import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    NODE_PREFIX,
    ProofError,
    consistency_ranges,
    inclusion_ranges,
    is_int,
    leaf_hash,
    node_hash,
    require_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "MerkleTree",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]


class MerkleTree:
    """An append-only RFC 9162 tree over leaf hashes, with roots and proofs for any size so far.

    Level ``k`` is one ``bytearray`` holding the hashes of the ``size >> k`` complete subtrees of
    ``2**k`` leaves that start at multiples of ``2**k``; there are ``max(1, size.bit_length())``
    levels (level 0 holds the leaf hashes). Every method raises :class:`ProofError` for a size or
    index out of range.

    That is about 64 bytes per leaf, appends cost amortized O(1) hashes, and the hash of any
    subtree the RFC recursion visits, for the current size or any earlier one, is a fold over at
    most ``log2(n)`` stored nodes. So ``root(size)`` costs O(log n) and a proof O(log^2 n) hashes,
    independent of how the tree was built. The levels persist as plain bytes (:meth:`to_levels`)
    and reload with no per-leaf work (:meth:`from_levels`).
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]

    # construction and persistence

    @classmethod
    def from_leaf_hashes(cls, buffer: bytes | bytearray | memoryview) -> MerkleTree:
        """Build a tree from the concatenation of 32-byte leaf hashes (one hash per node)."""
        view = memoryview(buffer).cast("B")
        if len(view) % HASH_SIZE:
            raise ProofError(
                f"leaf hash buffer must be a multiple of {HASH_SIZE} bytes, found {len(view)}"
            )
        tree = cls()
        tree._levels = [bytearray(view)]
        copy_prefix = NODE_PREFIX.copy
        while len(tree._levels[-1]) >= 2 * HASH_SIZE:
            below = memoryview(tree._levels[-1])
            pairs = len(below) // (2 * HASH_SIZE) * 2 * HASH_SIZE
            parents = bytearray()
            for start in range(0, pairs, 2 * HASH_SIZE):
                hasher = copy_prefix()
                hasher.update(below[start : start + 2 * HASH_SIZE])
                parents += hasher.digest()
            below.release()
            tree._levels.append(parents)
        return tree

    @classmethod
    def from_levels(cls, levels: Sequence[bytes | bytearray | memoryview]) -> MerkleTree:
        """Reload levels written by :meth:`to_levels`; checks their shape, copies, hashes nothing.

        Only the shape is checked. A store that does not trust its upper levels compares
        ``root()`` with its signed checkpoint, or rebuilds with ``from_leaf_hashes(levels[0])``.
        """
        if not levels:
            raise ProofError("expected at least the leaf level, found no levels")
        first = len(memoryview(levels[0]).cast("B"))
        if first % HASH_SIZE:
            raise ProofError(f"leaf level must be a multiple of {HASH_SIZE} bytes, found {first}")
        size = first // HASH_SIZE
        expected_count = max(1, size.bit_length())
        if len(levels) != expected_count:
            raise ProofError(
                f"a tree of {size} leaves has {expected_count} levels, found {len(levels)}"
            )
        copied: list[bytearray] = []
        for depth, level in enumerate(levels):
            data = bytearray(memoryview(level).cast("B"))
            expected = (size >> depth) * HASH_SIZE
            if len(data) != expected:
                raise ProofError(
                    f"level {depth} of a tree of {size} leaves must be {expected} bytes, "
                    f"found {len(data)}"
                )
            copied.append(data)
        tree = cls()
        tree._levels = copied
        return tree

    def to_levels(self) -> list[bytes]:
        """A copy of every level, leaf level first, for :meth:`from_levels`."""
        return [bytes(level) for level in self._levels]

    # growth

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0]) // HASH_SIZE

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash; completes the parents it finishes (amortized one hash)."""
        require_hash(leaf_hash, f"leaf hash {self.size}")
        levels = self._levels
        levels[0] += leaf_hash
        count = len(levels[0]) // HASH_SIZE
        depth = 0
        while count % 2 == 0:
            if depth + 1 == len(levels):
                levels.append(bytearray())
            hasher = NODE_PREFIX.copy()
            hasher.update(levels[depth][-2 * HASH_SIZE :])  # left || right, adjacent
            levels[depth + 1] += hasher.digest()
            count //= 2
            depth += 1

    def extend(self, hashes: Iterable[bytes]) -> None:
        """Append each leaf hash in order."""
        for value in hashes:
            self.append(value)

    def truncate(self, size: int) -> None:
        """Forget every leaf from ``size`` on (crash recovery cuts a torn tail this way)."""
        self._check_size(size, "truncate to")
        for depth, level in enumerate(self._levels):
            del level[(size >> depth) * HASH_SIZE :]
        del self._levels[max(1, size.bit_length()) :]

    # reading

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not is_int(index) or not 0 <= index < self.size:
            raise ProofError(f"leaf index must be in [0, {self.size}), found {index!r}")
        return self._node(0, index)

    def leaf_hashes(self, start: int, stop: int) -> bytes:
        """The leaf hashes of ``start`` to ``stop - 1``, concatenated (one slice, no copies per
        leaf: what a reader compares a page of entries against)."""
        if not (is_int(start) and is_int(stop) and 0 <= start <= stop <= self.size):
            raise ProofError(f"leaf range must lie in [0, {self.size}], found {start!r}..{stop!r}")
        return bytes(self._levels[0][start * HASH_SIZE : stop * HASH_SIZE])

    def subtree(self, depth: int, index: int) -> bytes:
        """MTH of the complete subtree of ``2**depth`` leaves starting at leaf
        ``index * 2**depth``."""
        if not (0 <= depth < len(self._levels) and 0 <= index < self.size >> depth):
            raise ProofError(
                f"no complete subtree {index} of {2**depth} leaves in a tree of {self.size}"
            )
        return self._node(depth, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them)."""
        if size is None:
            size = self.size
        self._check_size(size, "compute the root of")
        if size == 0:
            return EMPTY_ROOT
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 2.1.3.1: audit path for leaf ``index``."""
        self._check_size(size, "prove inclusion in")
        if not is_int(index) or not 0 <= index < size:
            raise ProofError(
                f"leaf index must be in [0, {size}) for a tree of size {size}, found {index!r}"
            )
        return [self._range_hash(lo, hi) for lo, hi in inclusion_ranges(index, size)]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) of RFC 9162 2.1.4.1 (empty when old is 0 or equal)."""
        self._check_size(new_size, "prove consistency with")
        if not is_int(old_size) or not 0 <= old_size <= new_size:
            raise ProofError(f"old size must be in [0, {new_size}], found {old_size!r}")
        if old_size in (0, new_size):
            return []
        return [self._range_hash(lo, hi) for lo, hi in consistency_ranges(old_size, new_size)]

    # internals

    def _check_size(self, size: object, action: str) -> None:
        if not is_int(size) or not 0 <= size <= self.size:
            raise ProofError(
                f"cannot {action} a tree of size {size!r}: tree has {self.size} leaves"
            )

    def _node(self, depth: int, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self._levels[depth][start : start + HASH_SIZE])

    def _range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range the RFC recursion visits (``lo`` aligned to the range).

        The range splits into complete aligned subtrees of decreasing size (the set bits of
        ``hi - lo``); the RFC tree over them is their right fold.
        """
        peaks: list[bytes] = []
        position = lo
        for depth in range((hi - lo).bit_length() - 1, -1, -1):
            if (hi - lo) >> depth & 1:
                peaks.append(self._node(depth, position >> depth))
                position += 1 << depth
        result = peaks.pop()
        while peaks:
            result = node_hash(peaks.pop(), result)
        return result


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaves that are already hashed (``hashes[i] = leaf_hash(d[i])``)."""
    for index, value in enumerate(hashes):
        require_hash(value, f"leaf hash {index}")
    if not hashes:
        return EMPTY_ROOT
    tree = MerkleTree.from_leaf_hashes(b"".join(hashes))
    return tree.root()
