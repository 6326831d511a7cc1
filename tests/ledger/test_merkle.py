"""RFC 9162 Merkle tree: published vectors, exhaustive small trees, and tampered proofs."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest

from ledger.errors import LedgerError
from ledger.merkle import (
    EMPTY_ROOT,
    MAX_TREE_SIZE,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# -- the reference: RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1 written as recursion, straight from the text


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: list[bytes]) -> bytes:
    """MTH over leaf hashes (the leaves are hashed already)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [naive_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*naive_subproof(m, leaves[:k], b), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# -- published vectors: transparency-dev/merkle proof/verify_test.go (also used by CT) ------------

VECTOR_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
VECTOR_ROOTS = [  # roots of the trees of sizes 1..8
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
VECTOR_INCLUSION = [  # (0-based leaf index, tree size, proof)
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (0, 1, []),
]
VECTOR_CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


def vector_tree() -> MerkleTree:
    tree = MerkleTree()
    tree.extend(leaf_hash(data) for data in VECTOR_LEAVES)
    return tree


def numbered_leaves(count: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(count)]


def flip(value: bytes, bit: int) -> bytes:
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


# -- hashes and vectors ---------------------------------------------------------------------------


def test_hash_prefixes_and_empty_root() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == VECTOR_ROOTS[0]
    assert node_hash(VECTOR_ROOTS[0], leaf_hash(b"\x00")) == VECTOR_ROOTS[1]
    assert MerkleTree().root() == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_published_root_for_each_size(size: int) -> None:
    tree = vector_tree()
    assert tree.root(size) == VECTOR_ROOTS[size - 1]
    assert (
        root_from_leaf_hashes([leaf_hash(d) for d in VECTOR_LEAVES[:size]])
        == (VECTOR_ROOTS[size - 1])
    )


@pytest.mark.parametrize(("index", "size", "proof"), VECTOR_INCLUSION)
def test_published_inclusion_proof(index: int, size: int, proof: list[bytes]) -> None:
    tree = vector_tree()
    assert tree.inclusion_proof(index, size) == proof
    verify_inclusion(leaf_hash(VECTOR_LEAVES[index]), index, size, proof, VECTOR_ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), VECTOR_CONSISTENCY)
def test_published_consistency_proof(old: int, new: int, proof: list[bytes]) -> None:
    tree = vector_tree()
    assert tree.consistency_proof(old, new) == proof
    verify_consistency(old, new, VECTOR_ROOTS[old - 1], VECTOR_ROOTS[new - 1], proof)


# -- exhaustive small trees -----------------------------------------------------------------------

LEAVES_64 = numbered_leaves(64)


@pytest.fixture(scope="module")
def tree_64() -> MerkleTree:
    tree = MerkleTree()
    tree.extend(LEAVES_64)
    return tree


@pytest.mark.parametrize("size", range(0, 65))
def test_root_of_every_earlier_size_matches_rfc_recursion(tree_64: MerkleTree, size: int) -> None:
    assert tree_64.root(size) == naive_mth(LEAVES_64[:size])


@pytest.mark.parametrize("size", range(1, 65))
def test_every_inclusion_proof_matches_rfc_and_verifies(tree_64: MerkleTree, size: int) -> None:
    root = naive_mth(LEAVES_64[:size])
    for index in range(size):
        proof = tree_64.inclusion_proof(index, size)
        assert proof == naive_path(index, LEAVES_64[:size]), (index, size)
        verify_inclusion(LEAVES_64[index], index, size, proof, root)


@pytest.mark.parametrize("new", range(1, 65))
def test_every_consistency_proof_matches_rfc_and_verifies(tree_64: MerkleTree, new: int) -> None:
    new_root = naive_mth(LEAVES_64[:new])
    for old in range(new + 1):
        proof = tree_64.consistency_proof(old, new)
        expected = naive_subproof(old, LEAVES_64[:new], True) if 0 < old < new else []
        assert proof == expected, (old, new)
        verify_consistency(old, new, naive_mth(LEAVES_64[:old]), new_root, proof)


def test_tree_built_at_once_equals_tree_built_by_appends(tree_64: MerkleTree) -> None:
    for size in range(65):
        at_once = MerkleTree.from_leaf_hashes(b"".join(LEAVES_64[:size]))
        assert at_once.to_levels() == tree_64_prefix(size).to_levels()
        assert at_once.root() == naive_mth(LEAVES_64[:size])


def tree_64_prefix(size: int) -> MerkleTree:
    tree = MerkleTree()
    tree.extend(LEAVES_64[:size])
    return tree


# -- tampering: every bit of every proof element and of the root ----------------------------------

FLIP_SIZES = [*range(1, 17), 31, 32, 33, 47, 63, 64]


def _flip_indices(size: int) -> list[int]:
    if size <= 16:
        return list(range(size))
    return sorted({0, 1, size // 2, size - 2, size - 1})


def _expect_rejected(verify: Callable[..., None], *args: object) -> None:
    with pytest.raises(ProofError):
        verify(*args)


@pytest.mark.parametrize("size", FLIP_SIZES)
def test_inclusion_rejects_any_single_bit_flip(tree_64: MerkleTree, size: int) -> None:
    root = tree_64.root(size)
    for index in _flip_indices(size):
        proof = tree_64.inclusion_proof(index, size)
        leaf = LEAVES_64[index]
        for bit in range(256):
            _expect_rejected(verify_inclusion, leaf, index, size, proof, flip(root, bit))
            _expect_rejected(verify_inclusion, flip(leaf, bit), index, size, proof, root)
            for position in range(len(proof)):
                tampered = [*proof]
                tampered[position] = flip(proof[position], bit)
                _expect_rejected(verify_inclusion, leaf, index, size, tampered, root)


@pytest.mark.parametrize("size", FLIP_SIZES)
def test_consistency_rejects_any_single_bit_flip(tree_64: MerkleTree, size: int) -> None:
    new_root = tree_64.root(size)
    olds = range(1, size) if size <= 16 else _flip_indices(size)[1:]
    for old in olds:
        proof = tree_64.consistency_proof(old, size)
        old_root = tree_64.root(old)
        for bit in range(256):
            _expect_rejected(verify_consistency, old, size, flip(old_root, bit), new_root, proof)
            _expect_rejected(verify_consistency, old, size, old_root, flip(new_root, bit), proof)
            for position in range(len(proof)):
                tampered = [*proof]
                tampered[position] = flip(proof[position], bit)
                _expect_rejected(verify_consistency, old, size, old_root, new_root, tampered)


# -- tampering: wrong positions, sizes and proof shapes -------------------------------------------


def _inclusion_attacks(
    tree: MerkleTree, index: int, size: int
) -> list[tuple[str, bytes, int, int, list[bytes], bytes]]:
    leaf, proof, root = tree.leaf(index), tree.inclusion_proof(index, size), tree.root(size)
    other = hashlib.sha256(b"some other hash").digest()
    return [
        ("index_minus_one", leaf, index - 1, size, proof, root),
        ("index_plus_one", leaf, index + 1, size, proof, root),
        ("index_xor_two", leaf, index ^ 2, size, proof, root),
        ("size_doubled", leaf, index, size * 2, proof, root),
        ("size_halved", leaf, index, size // 2, proof, root),
        ("another_leaf", other, index, size, proof, root),
        ("empty_root", leaf, index, size, proof, EMPTY_ROOT),
        ("truncated_proof", leaf, index, size, proof[:-1], root),
        ("extended_with_root", leaf, index, size, [*proof, root], root),
        ("extended_with_garbage", leaf, index, size, [*proof, other], root),
        ("prefixed_with_root", leaf, index, size, [root, *proof], root),
        ("reversed_proof", leaf, index, size, proof[::-1], root),
        ("short_element", leaf, index, size, [p[:31] for p in proof], root),
        ("long_element", leaf, index, size, [p + b"\x00" for p in proof], root),
    ]


@pytest.mark.parametrize(("index", "size"), [(0, 8), (5, 8), (2, 3), (1, 5), (6, 7), (20, 33)])
def test_inclusion_rejects_wrong_position_size_or_shape(
    tree_64: MerkleTree, index: int, size: int
) -> None:
    for name, leaf, bad_index, bad_size, proof, root in _inclusion_attacks(tree_64, index, size):
        genuine = (leaf, bad_index, bad_size, proof, root)
        if genuine == (
            tree_64.leaf(index),
            index,
            size,
            tree_64.inclusion_proof(index, size),
            root,
        ):
            continue  # unchanged (reversing a one-element proof): not an attack
        with pytest.raises(ProofError):
            verify_inclusion(leaf, bad_index, bad_size, proof, root)
            pytest.fail(f"{name} verified")


def _consistency_attacks(
    tree: MerkleTree, old: int, new: int
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    proof = tree.consistency_proof(old, new)
    r1, r2 = tree.root(old), tree.root(new)
    return [
        ("old_minus_one", old - 1, new, r1, r2, proof),
        ("old_plus_one", old + 1, new, r1, r2, proof),
        ("old_xor_two", old ^ 2, new, r1, r2, proof),
        ("new_doubled", old, new * 2, r1, r2, proof),
        ("new_halved", old, new // 2, r1, r2, proof),
        ("swapped_roots", old, new, r2, r1, proof),
        ("old_root_for_both", old, new, r1, r1, proof),
        ("empty_proof", old, new, r1, r2, []),
        ("truncated_proof", old, new, r1, r2, proof[:-1]),
        ("extended_with_old_root", old, new, r1, r2, [*proof, r1]),
        ("extended_with_new_root", old, new, r1, r2, [*proof, r2]),
        ("prefixed_with_old_root", old, new, r1, r2, [r1, *proof]),
        ("prefixed_with_first_element", old, new, r1, r2, [proof[0], *proof]),
        ("time_travel", new, old, r2, r1, proof),
    ]


@pytest.mark.parametrize(("old", "new"), [(1, 8), (6, 8), (2, 5), (6, 7), (3, 64), (31, 33)])
def test_consistency_rejects_wrong_sizes_roots_or_shape(
    tree_64: MerkleTree, old: int, new: int
) -> None:
    for name, bad_old, bad_new, r1, r2, proof in _consistency_attacks(tree_64, old, new):
        with pytest.raises(ProofError):
            verify_consistency(bad_old, bad_new, r1, r2, proof)
            pytest.fail(f"{name} verified")


# -- edge cases and argument checks ---------------------------------------------------------------

SOME_HASH = hashlib.sha256(b"x").digest()


@pytest.mark.parametrize(
    ("name", "old", "new", "old_root", "new_root", "proof", "accepted"),
    [
        ("empty_to_any_with_empty_proof", 0, 5, EMPTY_ROOT, SOME_HASH, [], True),
        ("empty_to_empty", 0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        ("same_size_same_root", 3, 3, SOME_HASH, SOME_HASH, [], True),
        ("empty_with_a_bogus_root", 0, 5, SOME_HASH, SOME_HASH, [], False),
        ("empty_with_a_non_empty_proof", 0, 5, EMPTY_ROOT, SOME_HASH, [SOME_HASH], False),
        ("same_size_fork", 3, 3, SOME_HASH, EMPTY_ROOT, [], False),
        ("same_size_with_a_proof", 3, 3, SOME_HASH, SOME_HASH, [SOME_HASH], False),
        ("shrinking_tree", 4, 3, SOME_HASH, SOME_HASH, [], False),
        ("negative_old_size", -1, 3, SOME_HASH, SOME_HASH, [], False),
        ("new_size_beyond_2_63", 1, 2**63, SOME_HASH, SOME_HASH, [SOME_HASH] * 64, False),
        ("growth_with_empty_proof", 1, 2, SOME_HASH, SOME_HASH, [], False),
        ("short_root", 3, 3, SOME_HASH[:31], SOME_HASH[:31], [], False),
        ("boolean_size", True, 1, SOME_HASH, SOME_HASH, [], False),
    ],
)
def test_consistency_edge_cases(
    name: str,
    old: int,
    new: int,
    old_root: bytes,
    new_root: bytes,
    proof: list[bytes],
    accepted: bool,
) -> None:
    if accepted:
        verify_consistency(old, new, old_root, new_root, proof)
    else:
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, new_root, proof)


@pytest.mark.parametrize(
    ("name", "index", "size", "proof"),
    [
        ("negative_index", -1, 4, [SOME_HASH] * 2),
        ("index_equal_to_size", 4, 4, [SOME_HASH] * 2),
        ("empty_tree", 0, 0, []),
        ("size_beyond_2_63", 0, MAX_TREE_SIZE + 1, [SOME_HASH] * 63),
        ("oversized_proof", 0, 4, [SOME_HASH] * 10_000),
        ("proof_longer_than_any_tree", 0, MAX_TREE_SIZE, [SOME_HASH] * 64),
        ("non_hash_element", 0, 2, ["ab" * 16]),
        ("boolean_index", False, 1, []),
    ],
)
def test_inclusion_rejects_impossible_arguments(
    name: str, index: int, size: int, proof: list[bytes]
) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(SOME_HASH, index, size, proof, SOME_HASH)


def test_single_leaf_tree_is_its_own_root() -> None:
    verify_inclusion(SOME_HASH, 0, 1, [], SOME_HASH)
    with pytest.raises(ProofError):
        verify_inclusion(SOME_HASH, 0, 1, [], EMPTY_ROOT)


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("inclusion_index_at_size", lambda t: t.inclusion_proof(8, 8)),
        ("inclusion_negative_index", lambda t: t.inclusion_proof(-1, 8)),
        ("inclusion_size_beyond_tree", lambda t: t.inclusion_proof(0, 9)),
        ("inclusion_in_empty_tree", lambda t: t.inclusion_proof(0, 0)),
        ("consistency_shrinking", lambda t: t.consistency_proof(5, 4)),
        ("consistency_beyond_tree", lambda t: t.consistency_proof(4, 9)),
        ("consistency_negative", lambda t: t.consistency_proof(-1, 4)),
        ("root_beyond_tree", lambda t: t.root(9)),
        ("root_negative", lambda t: t.root(-1)),
        ("leaf_beyond_tree", lambda t: t.leaf(8)),
        ("truncate_beyond_tree", lambda t: t.truncate(9)),
        ("append_short_hash", lambda t: t.append(b"\x00" * 31)),
    ],
)
def test_tree_refuses_out_of_range_requests(
    name: str, call: Callable[[MerkleTree], object]
) -> None:
    with pytest.raises(ProofError):
        call(vector_tree())


def test_proof_errors_are_ledger_errors() -> None:
    assert issubclass(ProofError, LedgerError)


# -- growth, truncation and persistence -----------------------------------------------------------


def test_proofs_for_an_old_size_do_not_change_as_the_tree_grows() -> None:
    small = tree_64_prefix(21)
    big = tree_64_prefix(64)
    for index in range(21):
        assert small.inclusion_proof(index, 21) == big.inclusion_proof(index, 21)
    for old in range(22):
        assert small.consistency_proof(old, 21) == big.consistency_proof(old, 21)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 8, 21, 32, 63])
def test_truncate_then_regrow_equals_a_fresh_tree(size: int) -> None:
    tree = tree_64_prefix(64)
    tree.truncate(size)
    assert tree.size == size
    assert tree.root() == naive_mth(LEAVES_64[:size])
    assert tree.to_levels() == tree_64_prefix(size).to_levels()
    tree.extend(LEAVES_64[size:])
    assert tree.to_levels() == tree_64_prefix(64).to_levels()


@pytest.mark.parametrize("size", [0, 1, 5, 16, 37, 64])
def test_levels_round_trip(size: int) -> None:
    tree = tree_64_prefix(size)
    levels = tree.to_levels()
    assert sum(len(level) for level in levels) < 64 * max(size, 1)
    loaded = MerkleTree.from_levels(levels)
    assert loaded.size == size
    assert loaded.root() == tree.root()
    assert loaded.to_levels() == levels
    loaded.append(SOME_HASH)
    tree.append(SOME_HASH)
    assert loaded.root() == tree.root()


@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        ("no_levels", lambda levels: []),
        ("missing_top_level", lambda levels: levels[:-1]),
        ("extra_level", lambda levels: [*levels, b""]),
        ("short_upper_level", lambda levels: [levels[0], levels[1][:-32], *levels[2:]]),
        ("torn_leaf_level", lambda levels: [levels[0][:-1], *levels[1:]]),
        ("extra_leaf", lambda levels: [levels[0] + SOME_HASH, *levels[1:]]),
    ],
)
def test_from_levels_rejects_a_mis_shaped_tree(
    name: str, mangle: Callable[[list[bytes]], list[bytes]]
) -> None:
    levels = tree_64_prefix(37).to_levels()
    with pytest.raises(ProofError):
        MerkleTree.from_levels(mangle(levels))


def test_from_leaf_hashes_rejects_a_torn_buffer() -> None:
    with pytest.raises(ProofError):
        MerkleTree.from_leaf_hashes(b"\x00" * 33)


def test_random_larger_tree_matches_rfc_recursion() -> None:
    rng = random.Random(9162)
    leaves = numbered_leaves(1000)
    tree = MerkleTree.from_leaf_hashes(b"".join(leaves))
    for _ in range(40):
        size = rng.randrange(1, 1001)
        index = rng.randrange(size)
        old = rng.randrange(size + 1)
        root = naive_mth(leaves[:size])
        assert tree.root(size) == root
        proof = tree.inclusion_proof(index, size)
        assert proof == naive_path(index, leaves[:size])
        verify_inclusion(leaves[index], index, size, proof, root)
        consistency = tree.consistency_proof(old, size)
        verify_consistency(old, size, naive_mth(leaves[:old]), root, consistency)
