"""``pht audit`` and the site's follower read a real registry through its C2SP tiles.

A real ``pht serve`` process serves a ledger of 2,601 entries (ten full entry bundles and a
partial one). The readers reach it through a small reverse proxy on loopback that records what was
asked and can play a hostile or an older registry: flip one byte of one tile it passes on, or
answer 404 for every tile (a registry from before tiles).
"""

from __future__ import annotations

import http.client
import io
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api.client.registry import Client
from api.errors import ProblemError
from cli.main import main as pht
from siteclient.errors import ForkDetectedError
from siteclient.follow.follower import Follower
from siteclient.follow.state import TrustStore
from tests.api.conftest import task
from tests.api.registry_process import RegistryProcess
from tests.ledger.factory import World

SIZE = 2601  # the genesis and 2,600 tasks: bundles 000..009 full, 010.p/41


@dataclass
class Proxy:
    """Forwards every request to the registry as sent (the Host header too, so the signature
    the registry checks is the one the reader made for this address)."""

    upstream: int
    tamper: str | None = None  # a /v1/tile/... path whose answer gets its last byte flipped
    no_tiles: bool = False  # answer 404 not-found for every tile, as a registry before tiles
    seen: list[str] = field(default_factory=list)
    url: str = ""

    def start(self) -> ThreadingHTTPServer:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.seen.append(self.path)
                if proxy.no_tiles and self.path.startswith("/v1/tile/"):
                    return self._answer(
                        404,
                        {"Content-Type": "application/problem+json"},
                        b'{"type":"https://pht.example/problems/not-found","status":404,'
                        b'"title":"Not Found"}',
                    )
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                upstream.request("GET", self.path, headers=dict(self.headers.items()))
                answer = upstream.getresponse()
                body = answer.read()
                upstream.close()
                if self.path == proxy.tamper and answer.status == 200:
                    body = body[:-1] + bytes([body[-1] ^ 0x01])  # inside the last entry or hash
                headers = {k: v for k, v in answer.getheaders() if k.lower() != "content-length"}
                self._answer(answer.status, headers, body)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("connection", "transfer-encoding", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def tiles_read(self) -> list[str]:
        return [p for p in self.seen if p.startswith("/v1/tile/")]

    def pages_read(self) -> list[str]:
        return [p for p in self.seen if p.startswith("/v1/events?") and not p.endswith("limit=1")]


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, world: World) -> Iterator[int]:
    """A real registry of SIZE entries, built in process (fast) and served by ``pht serve``."""
    from ledger.store.ledger import Ledger

    data = tmp_path_factory.mktemp("tiles") / "data"
    ledger = Ledger.create(
        data,
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        time_window=None,  # the world's clock is its own
    )
    ledger._commit([task(world, n) for n in range(SIZE - 1)])
    ledger.close()
    world.log_key.save(data / "log.key")
    process = RegistryProcess(data)
    process.start()
    try:
        yield process.port
    finally:
        process.stop()


@pytest.fixture
def proxy(registry: int) -> Iterator[Proxy]:
    proxy = Proxy(registry)
    server = proxy.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


def audit(proxy: Proxy, world: World, state: Path, *extra: str) -> tuple[int, str]:
    key = state.parent / "audrey.key"
    if not key.exists():
        world.keys["audrey"].save(key)
    argv = ["audit", "--registry", proxy.url, "--key", str(key), "--json", "--workers", "1"]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = pht([*argv, "--state", str(state), *extra])
    return code, err.getvalue()


def test_audit_reads_the_ledger_through_tiles(proxy: Proxy, world: World, tmp_path: Path) -> None:
    code, err = audit(proxy, world, tmp_path / "state")
    assert code == 0, err
    bundles = [f"/v1/tile/entries/{n:03d}" for n in range(10)] + ["/v1/tile/entries/010.p/41"]
    assert set(bundles) <= set(proxy.tiles_read())
    assert "/v1/tile/1/000.p/10" in proxy.tiles_read()
    assert proxy.pages_read() == []  # only entry 0 was read as a page, for its log key


def test_cached_tiles_are_read_back_and_a_damaged_one_is_fetched_again(
    proxy: Proxy, world: World, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    assert audit(proxy, world, state, "--cache-tiles")[0] == 0
    (cached,) = state.glob("*/tiles/entries/003")
    served = cached.read_bytes()
    proxy.seen.clear()
    assert audit(proxy, world, state, "--cache-tiles")[0] == 0
    full_bundles = [p for p in proxy.tiles_read() if "/entries/" in p and ".p/" not in p]
    assert full_bundles == []  # all ten from the cache
    cached.write_bytes(served[:-1] + bytes([served[-1] ^ 1]))  # a damaged cache is no lie
    proxy.seen.clear()
    code, err = audit(proxy, world, state, "--cache-tiles")
    assert code == 0, err
    assert proxy.tiles_read().count("/v1/tile/entries/003") == 1
    assert cached.read_bytes() == served


@pytest.mark.parametrize(
    ("tile", "named"),
    [
        ("/v1/tile/entries/004", "entry bundle 4 (entries 1024..1279) does not hash to the tree"),
        ("/v1/tile/entries/010.p/41", "do not hash to the root of the checkpoint of size 2601"),
        ("/v1/tile/1/000.p/10", "do not hash to the root of the checkpoint of size 2601"),
    ],
    ids=["full_bundle", "partial_bundle", "hash_tile"],
)
def test_audit_catches_a_registry_serving_a_tampered_tile(
    proxy: Proxy, world: World, tmp_path: Path, tile: str, named: str
) -> None:
    proxy.tamper = tile
    code, err = audit(proxy, world, tmp_path / "state")
    assert code == 3, err
    assert "THE REGISTRY CANNOT BE TRUSTED (UnsignedEntriesError)" in err
    assert named in err
    assert list((tmp_path / "state").glob("*/evidence/UnsignedEntriesError*"))


def test_audit_of_a_registry_without_tiles_reads_the_entry_pages(
    proxy: Proxy, world: World, tmp_path: Path
) -> None:
    proxy.no_tiles = True
    code, err = audit(proxy, world, tmp_path / "state")
    assert code == 0, err
    assert proxy.tiles_read() == ["/v1/tile/entries/000.p/1"]  # asked once
    assert len(proxy.pages_read()) == 3  # 1000 entries a page


def follower(proxy: Proxy, world: World, state: Path) -> Follower:
    client = Client(proxy.url, world.keys["site-a"])
    return Follower(client, TrustStore(state), log_key=None, genesis=None)


def test_follower_catches_up_a_long_backlog_through_tiles(
    proxy: Proxy, world: World, tmp_path: Path
) -> None:
    view = follower(proxy, world, tmp_path / "site").sync()
    assert view.size == SIZE
    tiles = proxy.tiles_read()
    # The first page came with the long-poll; the rest as bundles from the one holding 1000.
    assert "/v1/tile/entries/003" in tiles and "/v1/tile/entries/002" not in tiles
    assert "/v1/tile/entries/010.p/41" in tiles
    assert len(proxy.pages_read()) == 1


def test_follower_stops_on_a_tampered_bundle(proxy: Proxy, world: World, tmp_path: Path) -> None:
    proxy.tamper = "/v1/tile/entries/006"
    with pytest.raises(ForkDetectedError, match=r"UnsignedEntriesError.*entry bundle 6"):
        follower(proxy, world, tmp_path / "site").sync()
    assert list((tmp_path / "site").glob("evidence/UnsignedEntriesError*"))


def test_follower_of_a_registry_without_tiles_reads_pages(
    proxy: Proxy, world: World, tmp_path: Path
) -> None:
    proxy.no_tiles = True
    assert follower(proxy, world, tmp_path / "site").sync().size == SIZE
    assert len(proxy.pages_read()) == 3


def test_entries_too_large_for_a_bundle_are_read_as_pages(world: World, tmp_path: Path) -> None:
    """An event may take up to 1 MiB; an entry bundle frames at most 65,535 bytes an entry. The
    registry answers such a bundle with 422 ``tile-entry-too-large``, and the readers read its
    entries as pages instead, held to the checkpoint like any bundle: one in a full bundle, one
    in the partial bundle at the end."""
    from ledger.bodies import Task
    from ledger.store.ledger import Ledger

    data = tmp_path / "data"
    ledger = Ledger.create(
        data,
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        time_window=None,
    )
    large = {5, 270}  # in bundle 000 (full) and in 001.p/44 (the tail)

    def event(n: int) -> Any:
        config: dict[str, Any] = {"n": n, "pad": "x" * 70_000} if n in large else {"n": n}
        body = Task(image="myconsortium/avg:1", sites=("site-a",), config=config)
        return world.sign("alice", body)

    ledger._commit([event(n) for n in range(1, 300)])
    ledger.close()
    world.log_key.save(data / "log.key")
    process = RegistryProcess(data)
    process.start()
    proxy = Proxy(process.port)
    server = proxy.start()
    try:
        with Client(proxy.url, world.keys["audrey"]) as reader:
            with pytest.raises(ProblemError) as refused:
                reader.tile("entries/000")
            assert (refused.value.status, refused.value.slug) == (422, "tile-entry-too-large")
            assert "entry 5 has" in str(refused.value)
            assert reader.tile("entries/000.p/5")  # the entries before it still come as a bundle
        code, err = audit(proxy, world, tmp_path / "state")
        assert code == 0, err
        assert {"/v1/events?from=0&limit=256", "/v1/events?from=256&limit=44"} <= set(
            proxy.pages_read()
        )
        proxy.seen.clear()
        assert follower(proxy, world, tmp_path / "site").sync().size == 300
    finally:
        server.shutdown()
        server.server_close()
        process.stop()
