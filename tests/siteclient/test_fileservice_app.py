"""The FileService app in-process (falcon.testing) beside a real registry: checks a real server
never lets reach the app (waitress refuses oversized bodies first), a disk filling up while a file
is written, and a transfer left pending by an unreachable registry."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import falcon.testing
import pytest

from api.client.registry import Client
from api.client.transport import RetryPolicy
from siteclient.fileservice.app import FileLimits, create_file_app, free_bytes
from siteclient.fileservice.inbox import Inbox, received_files
from siteclient.fileservice.view import ViewBoard, ViewRefresher
from siteclient.follow.follower import Follower
from siteclient.follow.state import TrustStore
from tests.siteclient.fileservice_env import RECEIVER, mounted_tmpfs, sha256, signed_headers
from tests.siteclient.site_env import SiteEnv

ORIGIN = "http://falconframework.org"  # falcon.testing's default host


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteEnv]:
    env = SiteEnv(tmp_path_factory.mktemp("registry")).start()
    try:
        yield env
    finally:
        env.stop()


@dataclass
class App:
    client: falcon.testing.TestClient
    refresher: ViewRefresher
    board: ViewBoard
    inbox: Inbox
    clock: Clock
    registry: SiteEnv

    def put(
        self, task: str, data: bytes, *, name: str | None = None, **headers: str
    ) -> falcon.testing.Result:
        self.clock.now += 1.0  # signed after the app started
        path = f"/v1/files/{task}/{sha256(data)}"
        query = f"name={name}" if name else None
        url = ORIGIN + path + (f"?{query}" if query else "")
        signed = signed_headers(
            self.registry.world.keys["site-a"],
            url,
            digest_sha256=sha256(data),
            created=int(self.clock.now),
        )
        signed.update(headers)
        return self.client.simulate_put(path, query_string=query, body=data, headers=signed)

    def task(self) -> str:
        task = self.registry.post("pht-test/partial:1", {"n": secrets.token_hex(4)})
        self.refresher.sync_once()
        return task


@pytest.fixture
def make_app(registry: SiteEnv, tmp_path: Path) -> Iterator[Callable[..., App]]:
    opened: list[tuple[TrustStore, Client]] = []
    key = registry.world.keys[RECEIVER]

    def make(
        *,
        inbox: Path | None = None,
        poster: Client | None = None,
        limits: FileLimits | None = None,
        free_space: Callable[[Path], int] = free_bytes,
    ) -> App:
        store = TrustStore(tmp_path / f"trust-{len(opened)}", exclusive=True)
        client = Client(registry.url, key)
        opened.append((store, client))
        follower = Follower(client, store, log_key=None, genesis=None)
        board = ViewBoard()
        refresher = ViewRefresher(follower, board, site=RECEIVER, wait=0)
        refresher.sync_once()
        clock = Clock()
        box = Inbox(inbox or tmp_path / "inbox")
        app = create_file_app(
            site=RECEIVER,
            key=key,
            views=board,
            inbox=box,
            client=poster or client,
            public_url=ORIGIN,
            clock=clock,
            limits=limits or FileLimits(max_file_bytes=1 << 20, min_free_bytes=0),
            free_space=free_space,
            catch_up_s=0.1,
        )
        return App(falcon.testing.TestClient(app), refresher, board, box, clock, registry)

    yield make
    for store, client in opened:
        client.close()
        store.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", size="1m") as path:
        yield path


def _slug(result: falcon.testing.Result) -> str:
    return str(result.json.get("type", "")).rsplit("/", 1)[-1]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_rejects_oversized_upload_before_reading_it(make_app: Callable[..., App]) -> None:
    app = make_app(limits=FileLimits(max_file_bytes=1000, min_free_bytes=0))
    task = app.task()
    declared = app.put(task, secrets.token_bytes(1001))
    assert declared.status_code == 413 and _slug(declared) == "body-too-large"
    assert app.put(task, secrets.token_bytes(1000)).status_code == 201  # the limit itself is fine
    assert len(_files(app.inbox.root / task)) == 2  # the bytes and their receipt, nothing else


def test_rejects_upload_without_content_length(make_app: Callable[..., App]) -> None:
    app = make_app()
    task = app.task()
    data = b"no declared length"
    app.clock.now += 1.0
    path = f"/v1/files/{task}/{sha256(data)}"
    headers = signed_headers(
        app.registry.world.keys["site-a"],
        ORIGIN + path,
        digest_sha256=sha256(data),
        created=int(app.clock.now),
    )
    result = app.client.simulate_request("PUT", path, headers=headers)  # no body, no length
    assert result.status_code == 411
    assert _files(app.inbox.root) == []


def test_rejects_wrong_content_type(make_app: Callable[..., App]) -> None:
    app = make_app()
    task = app.task()
    result = app.put(task, b"{}", **{"Content-Type": "application/json"})
    assert result.status_code == 415
    assert _files(app.inbox.root) == []


def test_disk_filling_while_writing_refuses_with_507_and_keeps_nothing(
    make_app: Callable[..., App], tmpfs: Path
) -> None:
    # The free-space probe is fooled (say, another writer filled the disk after it looked), so
    # the write itself hits ENOSPC.
    app = make_app(
        inbox=tmpfs,
        limits=FileLimits(max_file_bytes=4 << 20, min_free_bytes=0),
        free_space=lambda path: 1 << 40,
    )
    task = app.task()
    result = app.put(task, secrets.token_bytes(2 << 20))
    assert result.status_code == 507 and _slug(result) == "insufficient-storage"
    assert _files(tmpfs) == []
    assert received_files(tmpfs, task) == []


def test_transfer_left_pending_is_recorded_once_when_sent_again(
    make_app: Callable[..., App], registry: SiteEnv, tmp_path: Path
) -> None:
    unreachable = Client(
        "http://127.0.0.1:9", registry.world.keys[RECEIVER], retry=RetryPolicy(attempts=1)
    )
    first = make_app(inbox=tmp_path / "shared", poster=unreachable)
    task = first.task()
    data = secrets.token_bytes(3000)
    pending = first.put(task, data, name="late.bin")
    assert pending.status_code == 503 and _slug(pending) == "unavailable"
    assert received_files(first.inbox, task) == []  # kept, but not listed: not in the ledger
    [entry] = first.inbox.pending()

    second = make_app(inbox=tmp_path / "shared")
    retried = second.put(task, data, name="late.bin")
    assert retried.status_code == 200
    assert retried.json["event_id"] == entry.transfer.event.id  # the same signed event
    again = second.put(task, data)
    assert again.json["transfer_index"] == retried.json["transfer_index"]
    [received] = received_files(second.inbox, task)
    assert received.transfer_index == retried.json["transfer_index"]
    with registry.client() as client:
        entries = client.entries(0, 1000).entries
    events = [e.event.event.id for e in entries]
    assert events.count(entry.transfer.event.id) == 1
    unreachable.close()


def test_healthz_says_not_ready_when_the_feed_is_halted(make_app: Callable[..., App]) -> None:
    app = make_app()
    assert app.client.simulate_get("/healthz").json["ledger_size"] >= 1
    app.board.halt("fork detected (test)")
    result = app.client.simulate_get("/healthz")
    assert result.status_code == 503 and "fork detected" in result.json["detail"]
    task = secrets.token_hex(32)
    assert app.put(task, b"x").status_code == 401  # no view: no member key verifies
