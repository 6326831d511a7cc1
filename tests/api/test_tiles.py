"""``/v1/tile/...``: the ledger as C2SP tlog-tiles, on both stores.

The reader here is written from the spec (c2sp.org/tlog-tiles), not from the server's code: it
spells tile paths itself, fetches every tile a checkpoint's size requires, checks each entry of
the bundles against its level-0 hash and each level-1 hash against the level-0 tile below it, and
rebuilds the root with its own RFC 6962 recursion, which must be the signed checkpoint's.
"""

from __future__ import annotations

import hashlib

import pytest

from ledger.checkpoint import parse_verifier_key, verify_checkpoint
from ledger.store.ledger import Ledger
from tests.api.conftest import Caller, problem_slug, task
from tests.ledger.factory import World

BOTH_STORES = True


def index_path(n: int) -> str:
    groups = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g:03d}" for g in groups[:-1]] + [f"{groups[-1]:03d}"])


def tile_url(level: int | str, n: int, width: int = 256) -> str:
    return f"/v1/tile/{level}/{index_path(n)}" + (f".p/{width}" if width < 256 else "")


def mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash over leaf hashes."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


class TileReader:
    def __init__(self, call: Caller, world: World) -> None:
        self.call = call
        self.key = world.keys["site-a"]

    def get(self, url: str) -> bytes:
        result = self.call("GET", url, key=self.key)
        assert result.status_code == 200, (url, result.text)
        assert result.headers["content-type"] == "application/octet-stream"
        return result.content

    def hashes(self, level: int, n: int, width: int) -> list[bytes]:
        data = self.get(tile_url(level, n, width))
        assert len(data) == 32 * width
        return [data[i : i + 32] for i in range(0, len(data), 32)]

    def entries(self, n: int, width: int) -> list[bytes]:
        data, out = self.get(tile_url("entries", n, width)), []
        while data:
            length = int.from_bytes(data[:2], "big")
            out.append(data[2 : 2 + length])
            data = data[2 + length :]
        assert len(out) == width
        return out

    def root(self, size: int) -> tuple[bytes, list[bytes]]:
        """The root of the tree of ``size`` rebuilt from tiles, and every entry."""
        leaves: list[bytes] = []
        entries: list[bytes] = []
        for n in range(-(-size // 256)):
            width = min(256, size - 256 * n)
            tile = self.hashes(0, n, width)
            bundle = self.entries(n, width)
            assert [hashlib.sha256(b"\x00" + e).digest() for e in bundle] == tile
            leaves += tile
            entries += bundle
        full = size // 256
        for n in range(-(-full // 256)):
            width = min(256, full - 256 * n)
            for i, hashed in enumerate(self.hashes(1, n, width)):
                first = (256 * n + i) * 256
                assert hashed == mth(leaves[first : first + 256])
        return mth(leaves), entries


def test_a_reader_rebuilds_the_signed_root_from_tiles(
    call: Caller, ledger: Ledger, world: World
) -> None:
    for n in range(299):
        ledger.append(task(world, n))
    note = call("GET", "/v1/checkpoint")
    cp = verify_checkpoint(note.content, parse_verifier_key(ledger.log_key), origin=world.origin)
    assert cp.size == 300
    root, entries = TileReader(call, world).root(cp.size)
    assert root == cp.root
    assert entries == [ledger.entry_bytes(i) for i in range(300)]


def test_tiles_are_immutable_and_cached_for_good(
    call: Caller, ledger: Ledger, world: World
) -> None:
    reader = TileReader(call, world)
    for n in range(9):
        ledger.append(task(world, n))
    partial = reader.get(tile_url(0, 0, 10))
    result = call("GET", tile_url(0, 0, 10), key=world.keys["alice"])
    assert result.headers["cache-control"] == "private, max-age=31536000, immutable"
    for n in range(9, 300):
        ledger.append(task(world, n))
    full = reader.get(tile_url(0, 0))
    assert reader.get(tile_url(0, 0, 10)) == partial == full[: 32 * 10]
    assert reader.get(tile_url(1, 0, 1)) == mth(reader.hashes(0, 0, 256))


@pytest.mark.parametrize(
    "url",
    [
        "/v1/tile/0/001",  # a full tile beyond the ledger
        "/v1/tile/0/000.p/2",  # a partial one beyond it
        "/v1/tile/entries/000.p/3",
        "/v1/tile/1/000.p/1",  # no full level-0 tile yet
        "/v1/tile/0/1",  # not three digits
        "/v1/tile/00/000",  # a level with a leading zero
        "/v1/tile/64/000",
        "/v1/tile/0/x000/000",  # a non-canonical spelling of 0
        "/v1/tile/0/000.p/0",
        "/v1/tile/0/000.p/256",
        "/v1/tile/0/000.p/01",
        "/v1/tile/0/x001",
        "/v1/tile/0/000/",
        "/v1/tile/data/000",
    ],
)
def test_paths_that_name_no_tile_held_are_not_found(
    call: Caller, world: World, ledger: Ledger, url: str
) -> None:
    result = call("GET", url, key=world.keys["alice"])
    assert result.status_code == 404, result.text
    assert problem_slug(result) == "not-found"


def test_tiles_are_for_members(call: Caller) -> None:
    result = call("GET", "/v1/tile/0/000.p/1")
    assert result.status_code == 401
