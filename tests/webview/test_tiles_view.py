"""The web view reads a whole ledger (its "full" mode) as the registry's C2SP entry bundles:
proven against the signed checkpoint like pages were, kept by the browser's cache (full and
partial bundles never change), read as pages from a registry that serves no tiles, and a bundle
that lies gets the red banner like a page that lies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger import tiles
from ledger.bodies import Task
from ledger.tiles import Tile
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World
from tests.webview.conftest import Ledger, sign_in, verified
from tests.webview.proxy import TamperingProxy
from tests.webview.test_attacks import assert_banner

TASKS = 560  # with the entries init_registry writes: two full bundles and a partial one


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ledger, int]]:
    tmp = tmp_path_factory.mktemp("tiles-view")
    world = World()
    process = RegistryProcess(init_registry(tmp, world))
    process.start()
    ledger = Ledger(url=process.url, world=world, keys=tmp / "keys", process=process)
    try:
        with ledger.client("alice") as client:
            for n in range(TASKS):
                body = Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": n})
                client.post_event(world.sign("alice", body))
            size = int(client.checkpoint().split(b"\n")[1])
        yield ledger, size
    finally:
        process.stop()


@pytest.fixture
def proxy(grown: tuple[Ledger, int]) -> Iterator[TamperingProxy]:
    in_front = TamperingProxy(grown[0].url)
    try:
        yield in_front
    finally:
        in_front.close()


def bundles(size: int) -> list[str]:
    full, rest = divmod(size, 256)
    paths = [f"/v1/tile/entries/{n:03d}" for n in range(full)]
    return paths + ([f"/v1/tile/entries/{full:03d}.p/{rest}"] if rest else [])


def page_reads(seen: list[str]) -> list[str]:
    """Entry pages asked for (not the live long-poll from the size)."""
    return [p for p in seen if p.startswith("/v1/events?") and "wait=" not in p]


def test_the_whole_ledger_is_read_as_bundles_and_kept_by_the_browser(
    grown: tuple[Ledger, int], proxy: TamperingProxy, page: Any
) -> None:
    ledger, size = grown
    assert size > 512 and size % 256  # two full bundles and a partial one
    sign_in(page, proxy.url, ledger.keys / "alice.key")
    verified(page)
    assert page.inner_text("#size") == str(size)
    tiles = [p for p in proxy.seen if p.startswith("/v1/tile/")]
    assert sorted(tiles) == bundles(size)  # each once; no page of entries
    assert page_reads(proxy.seen) == []

    proxy.seen.clear()
    page.reload()
    sign_in(page, proxy.url, ledger.keys / "alice.key", trust=False)
    verified(page)
    assert [p for p in proxy.seen if p.startswith("/v1/tile/")] == []  # all from the cache
    assert page.inner_text("#size") == str(size)


def test_a_registry_without_tiles_is_read_as_pages(
    grown: tuple[Ledger, int], proxy: TamperingProxy, page: Any
) -> None:
    ledger, size = grown
    proxy.missing = ("/v1/tile/",)
    sign_in(page, proxy.url, ledger.keys / "alice.key")
    verified(page)
    assert page.inner_text("#size") == str(size)
    assert [p for p in proxy.seen if p.startswith("/v1/tile/")] == [bundles(size)[0]]  # asked once
    assert page_reads(proxy.seen)  # the entries came as pages


def test_a_bundle_that_lies_gets_the_banner(
    grown: tuple[Ledger, int], proxy: TamperingProxy, page: Any
) -> None:
    ledger, _ = grown
    proxy.tamper = lambda path, status, data: (
        data.replace(b'"n":300', b'"n":900') if path == "/v1/tile/entries/001" else None
    )
    sign_in(page, proxy.url, ledger.keys / "alice.key")
    assert "do not hash to the checkpoint's root" in assert_banner(page, "entries", "tile")


CUT = """async ([indexes, bundles]) => {
    const version = document.querySelector('script[type=module]').src.split('/')[4];
    const r = await import(`/assets/${version}/registry.js`);
    const bytes = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
    const cut = bundles.map(([hex, width]) => {
        try { return r.bundleRecords(bytes(hex), width); } catch (e) { return e.message; }
    });
    return {paths: indexes.map(r.tileIndexPath), cut};
}"""


def test_the_pages_tile_paths_and_bundle_cutting_agree_with_the_ledger(
    grown: tuple[Ledger, int], page: Any
) -> None:
    """``registry.js`` names tiles as :mod:`ledger.tiles` does, cuts a bundle it frames into the
    same entries, and refuses one cut short, one with trailing bytes, or one of another width."""
    indexes = [0, 7, 999, 1000, 1001, 123_456, 1_234_067, 10**9]
    entries = [b'{"n":1}', "é".encode(), b""]
    good = tiles.bundle(entries, 0)
    cases = [
        (good.hex(), 3),
        (good[:-1].hex(), 3),  # cut short
        ((good + b"\0").hex(), 3),  # a trailing byte: a length with no entry
        (good.hex(), 2),  # another width
        ((b"\0\2\xff\xfe").hex(), 1),  # not UTF-8
    ]
    page.goto(grown[0].url + "/")
    page.wait_for_selector("#sign-in")
    result = page.evaluate(CUT, [indexes, cases])
    assert result["paths"] == [
        tiles.path(Tile(None, n, 256)).removeprefix("entries/") for n in indexes
    ]
    assert result["cut"][0] == [e.decode() for e in entries]
    assert "cut short after 2 entries" in result["cut"][1]
    assert "cut short after 3 entries" in result["cut"][2]
    assert "holds 3 entries, not 2" in result["cut"][3]
    assert "not UTF-8" in result["cut"][4]
