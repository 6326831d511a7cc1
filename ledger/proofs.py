"""What a verifier of RFC 9162 section 2.1 proofs needs, and nothing of the tree that makes them.

The leaf and node hashes, which subtrees a proof holds (shared with :mod:`ledger.merkle`, so a
proof's length is checked against the very shape the tree generates), and the verifiers. Pure and
standard-library only; the verifiers fail closed: they return ``None`` or raise :class:`ProofError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeGuard

from ledger.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
MAX_TREE_SIZE = 2**63 - 1  # a decision beyond the RFC: tree sizes fit a signed 64-bit integer

_sha256 = hashlib.sha256
NODE_PREFIX = _sha256(b"\x01")
"""SHA-256 fed ``0x01``: copy it to hash a node (cheaper than concatenating the prefix)."""

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""The hash of the empty tree, ``SHA-256("")``."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes | bytearray, right: bytes | bytearray) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    hasher = NODE_PREFIX.copy()
    hasher.update(left)
    hasher.update(right)
    return hasher.digest()


# -- proof shapes -----------------------------------------------------------------------------
#
# Both proofs are lists of subtree hashes MTH(D[lo:hi]). Which ranges they hold depends only on
# the sizes and the index, so generation and the length check in the verifiers share these plans.
# Ranges are produced top-down and reversed, so the list starts next to the leaf (RFC order).


def largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162: the largest power of two strictly smaller than ``n`` (``n > 1``).

    A tree of ``n > 1`` leaves splits there: MTH(D[0:n]) = node_hash(MTH(D[0:k]), MTH(D[k:n])).
    """
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtree ranges of PATH(index, D[0:size]), leaf end first; ``0 <= index < size``."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + largest_power_of_two_below(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The subtree ranges of PROOF(old_size, D[0:new_size]); ``0 < old_size < new_size``."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, new_size
    whole_old_tree_known = True  # the RFC's flag b: MTH(D[0:old_size]) is the verifier's own root
    while old_size != hi:
        mid = lo + largest_power_of_two_below(hi - lo)
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


# -- verification -------------------------------------------------------------------------------


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    RFC 9162 2.1.3.2, iteratively. Raises :class:`ProofError` for an index or size out of range
    (sizes are at most :data:`MAX_TREE_SIZE`), a proof of the wrong length or with an element
    that is not 32 bytes, or a computed root that differs; all but the last before hashing.

    What a proof does not bind: an RFC 9162 proof ties a leaf (or an old root) to a *root*; a
    verifier told a wrong size can still succeed when both sizes give the tree the same shape
    along the path (leaf 1 of 5 verifies as leaf 1 of 6 against the size-5 root). The size is
    bound by the signed checkpoint that carries it together with the root, so callers take both
    from one verified checkpoint (the same holds for :func:`verify_consistency`).
    """
    _require_tree_size(size, "tree size")
    if not is_int(index) or not 0 <= index < size:
        raise ProofError(f"leaf index must be in [0, {size}), found {index!r}")
    require_hash(leaf_hash, "leaf hash")
    require_hash(root, "root")
    expected_length = len(inclusion_ranges(index, size))
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

    RFC 9162 2.1.4.2, iteratively. The RFC text only covers ``0 < old_size < new_size``; beyond
    it, decided here:

    - ``old_size == new_size``: the proof must be empty and the two roots equal.
    - ``old_size == 0``: the proof must be empty and ``old_root`` must be :data:`EMPTY_ROOT` (a
      tree head claiming zero leaves with any other root is not a tree head of this log).
    - Tree sizes are at most :data:`MAX_TREE_SIZE` (``2**63 - 1``, a signed 64-bit integer).

    Raises :class:`ProofError` for sizes out of range or shrinking, a proof of the wrong length
    or with an element that is not 32 bytes (both before hashing), or either computed root
    differing from the one given.
    """
    _require_tree_size(new_size, "new tree size")
    if not is_int(old_size) or not 0 <= old_size <= new_size:
        raise ProofError(f"old tree size must be in [0, {new_size}], found {old_size!r}")
    require_hash(old_root, "old root")
    require_hash(new_root, "new root")
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
    _require_proof(proof, len(consistency_ranges(old_size, new_size)), what)

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


def is_int(value: object) -> TypeGuard[int]:
    """An ``int`` and not a ``bool`` (``True`` is no index)."""
    return isinstance(value, int) and not isinstance(value, bool)


def require_hash(value: object, what: str) -> None:
    """Raise :class:`ProofError` unless ``value`` is 32 bytes."""
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        found = f"{len(value)} bytes" if isinstance(value, bytes | bytearray) else type(value)
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, found {found}")


def _require_tree_size(size: object, what: str) -> None:
    if not is_int(size) or not 0 <= size <= MAX_TREE_SIZE:
        raise ProofError(f"{what} must be an integer in [0, 2**63), found {size!r}")


def _require_proof(proof: Sequence[bytes], expected_length: int, what: str) -> None:
    if len(proof) != expected_length:
        raise ProofError(f"{what} must have {expected_length} hashes, found {len(proof)}")
    for position, element in enumerate(proof):
        require_hash(element, f"{what}: element {position}")
