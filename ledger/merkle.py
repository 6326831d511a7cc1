"""RFC 9162 section 2.1 Merkle tree: hashes, an incremental in-memory tree, proofs and verifiers.

Pure and standard-library only (``hashlib``). The tree hash is exactly RFC 9162's MTH:

- ``leaf_hash(d) = SHA-256(0x00 || d)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``;
- the empty tree hashes to ``SHA-256("")`` (:data:`EMPTY_ROOT`);
- a tree of ``n > 1`` leaves splits at ``k``, the largest power of two below ``n``.

:class:`MerkleTree` keeps, per level ``k``, the hashes of every *complete, aligned* subtree of
``2**k`` leaves in one ``bytearray`` (level 0 holds the leaf hashes). That is about 64 bytes per
leaf, appends cost amortized O(1) hashes, and the hash of any subtree the RFC recursion visits,
for the current size or any earlier one, is a fold over at most ``log2(n)`` stored nodes. So
``root(size)`` costs O(log n) and a proof O(log^2 n) hashes, independent of how the tree was built.
The levels persist as plain bytes (:meth:`MerkleTree.to_levels`) and reload with no per-leaf work
(:meth:`MerkleTree.from_levels`).

The verifiers are the iterative algorithms of RFC 9162 2.1.3.2 (inclusion) and 2.1.4.2
(consistency). They fail closed: they return ``None`` or raise :class:`ProofError`, and they check
argument ranges and the exact proof length before hashing anything.

Decisions beyond the RFC text (which only covers ``0 < first < second`` for consistency):

- ``old_size == new_size``: the proof must be empty and the two roots equal.
- ``old_size == 0``: the proof must be empty and ``old_root`` must be :data:`EMPTY_ROOT` (a tree
  head claiming zero leaves with any other root is not a tree head of this log).
- Tree sizes are at most :data:`MAX_TREE_SIZE` (``2**63 - 1``, a signed 64-bit integer).

What a proof does not bind: an RFC 9162 proof ties a leaf (or an old root) to a *root*; a
verifier told a wrong size can still succeed when both sizes give the tree the same shape along
the path (leaf 1 of 5 verifies as leaf 1 of 6 against the size-5 root). The size is bound by
the signed checkpoint that carries it together with the root, so callers take both from one
verified checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TypeGuard

from ledger.errors import ProofError

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

HASH_SIZE = 32
MAX_TREE_SIZE = 2**63 - 1

_sha256 = hashlib.sha256
_NODE_PREFIX = _sha256(b"\x01")  # copied per node: cheaper than concatenating the prefix

EMPTY_ROOT: bytes = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes | bytearray, right: bytes | bytearray) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    hasher = _NODE_PREFIX.copy()
    hasher.update(left)
    hasher.update(right)
    return hasher.digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaves that are already hashed (``hashes[i] = leaf_hash(d[i])``)."""
    for index, value in enumerate(hashes):
        _require_hash(value, f"leaf hash {index}")
    if not hashes:
        return EMPTY_ROOT
    tree = MerkleTree.from_leaf_hashes(b"".join(hashes))
    return tree.root()


# -- proof shapes -----------------------------------------------------------------------------
#
# Both proofs are lists of subtree hashes MTH(D[lo:hi]). Which ranges they hold depends only on
# the sizes and the index, so generation and the length check in the verifiers share these plans.
# Ranges are produced top-down and reversed, so the list starts next to the leaf (RFC order).


def _largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162: the largest power of two strictly smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtree ranges of PATH(index, D[0:size]), leaf end first; ``0 <= index < size``."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _largest_power_of_two_below(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The subtree ranges of PROOF(old_size, D[0:new_size]); ``0 < old_size < new_size``."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, new_size
    whole_old_tree_known = True  # the RFC's flag b: MTH(D[0:old_size]) is the verifier's own root
    while old_size != hi:
        mid = lo + _largest_power_of_two_below(hi - lo)
        if old_size <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
            whole_old_tree_known = False
    if not whole_old_tree_known:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


# -- the tree -----------------------------------------------------------------------------------


class MerkleTree:
    """An append-only RFC 9162 tree over leaf hashes, with roots and proofs for any size so far.

    Level ``k`` is one ``bytearray`` holding the hashes of the ``size >> k`` complete subtrees of
    ``2**k`` leaves that start at multiples of ``2**k``; there are ``max(1, size.bit_length())``
    levels. Every method raises :class:`ProofError` for a size or index out of range.
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
        copy_prefix = _NODE_PREFIX.copy
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
        _require_hash(leaf_hash, f"leaf hash {self.size}")
        levels = self._levels
        levels[0] += leaf_hash
        count = len(levels[0]) // HASH_SIZE
        depth = 0
        while count % 2 == 0:
            if depth + 1 == len(levels):
                levels.append(bytearray())
            hasher = _NODE_PREFIX.copy()
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
        if not _is_int(index) or not 0 <= index < self.size:
            raise ProofError(f"leaf index must be in [0, {self.size}), found {index!r}")
        return self._node(0, index)

    def leaf_hashes(self, start: int, stop: int) -> bytes:
        """The leaf hashes of ``start`` to ``stop - 1``, concatenated (one slice, no copies per
        leaf: what a reader compares a page of entries against)."""
        if not (_is_int(start) and _is_int(stop) and 0 <= start <= stop <= self.size):
            raise ProofError(f"leaf range must lie in [0, {self.size}], found {start!r}..{stop!r}")
        return bytes(self._levels[0][start * HASH_SIZE : stop * HASH_SIZE])

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
        if not _is_int(index) or not 0 <= index < size:
            raise ProofError(
                f"leaf index must be in [0, {size}) for a tree of size {size}, found {index!r}"
            )
        return [self._range_hash(lo, hi) for lo, hi in _inclusion_ranges(index, size)]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) of RFC 9162 2.1.4.1 (empty when old is 0 or equal)."""
        self._check_size(new_size, "prove consistency with")
        if not _is_int(old_size) or not 0 <= old_size <= new_size:
            raise ProofError(f"old size must be in [0, {new_size}], found {old_size!r}")
        if old_size in (0, new_size):
            return []
        return [self._range_hash(lo, hi) for lo, hi in _consistency_ranges(old_size, new_size)]

    # internals

    def _check_size(self, size: object, action: str) -> None:
        if not _is_int(size) or not 0 <= size <= self.size:
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


# -- verification -------------------------------------------------------------------------------


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    RFC 9162 2.1.3.2. Raises :class:`ProofError` for an index or size out of range, a proof of
    the wrong length or with an element that is not 32 bytes, or a computed root that differs.
    """
    _require_tree_size(size, "tree size")
    if not _is_int(index) or not 0 <= index < size:
        raise ProofError(f"leaf index must be in [0, {size}), found {index!r}")
    _require_hash(leaf_hash, "leaf hash")
    _require_hash(root, "root")
    expected_length = len(_inclusion_ranges(index, size))
    _require_proof(proof, expected_length, f"inclusion proof for leaf {index} of {size}")

    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof for leaf {index} of {size} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof for leaf {index} of {size} is too short")
    if r != root:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} leads to root {r.hex()}, "
            f"expected {root.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (``new_size``, ``new_root``) extends (``old_size``, ``old_root``).

    RFC 9162 2.1.4.2, with the edge cases in the module docstring. Raises :class:`ProofError`
    for sizes out of range or shrinking, a proof of the wrong length or with an element that is
    not 32 bytes, or either computed root differing from the one given.
    """
    _require_tree_size(new_size, "new tree size")
    if not _is_int(old_size) or not 0 <= old_size <= new_size:
        raise ProofError(f"old tree size must be in [0, {new_size}], found {old_size!r}")
    _require_hash(old_root, "old root")
    _require_hash(new_root, "new root")
    what = f"consistency proof from size {old_size} to {new_size}"

    if old_size == 0:
        _require_proof(proof, 0, what)
        if old_root != EMPTY_ROOT:
            raise ProofError(
                f"a tree of size 0 has root {EMPTY_ROOT.hex()}, found {old_root.hex()}"
            )
        return
    if old_size == new_size:
        _require_proof(proof, 0, what)
        if old_root != new_root:
            raise ProofError(
                f"two trees of size {old_size} must have one root, found {old_root.hex()} "
                f"and {new_root.hex()}"
            )
        return
    _require_proof(proof, len(_consistency_ranges(old_size, new_size)), what)

    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"{what} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"{what} is too short")
    if fr != old_root:
        raise ProofError(f"{what} leads to old root {fr.hex()}, expected {old_root.hex()}")
    if sr != new_root:
        raise ProofError(f"{what} leads to new root {sr.hex()}, expected {new_root.hex()}")


# -- argument checks ----------------------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_tree_size(size: object, what: str) -> None:
    if not _is_int(size) or not 0 <= size <= MAX_TREE_SIZE:
        raise ProofError(f"{what} must be an integer in [0, 2**63), found {size!r}")


def _require_hash(value: object, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        found = f"{len(value)} bytes" if isinstance(value, bytes | bytearray) else type(value)
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, found {found}")


def _require_proof(proof: Sequence[bytes], expected_length: int, what: str) -> None:
    if len(proof) != expected_length:
        raise ProofError(f"{what} must have {expected_length} hashes, found {len(proof)}")
    for position, element in enumerate(proof):
        _require_hash(element, f"{what}: element {position}")
