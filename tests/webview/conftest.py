"""Fixtures of the web view's browser tests: a real ``pht serve`` over a real ledger, and Debian's
chromium driven headless by Playwright (the system browser: ``playwright install`` is never run).

Screenshots of each page go to ``tests/webview/screenshots/`` (or ``$PHT_SCREENSHOTS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from api.client.registry import Client
from crypto.age import AgeIdentity, encrypt_bytes, save_identity
from ledger.bodies import Result, ResultState, Status, StatusState, Task
from ledger.tasks import BlobRef, Output
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World

CHROMIUM = os.environ.get("PHT_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("PHT_SCREENSHOTS", Path(__file__).parent / "screenshots"))

if os.environ.get("CI"):
    import playwright.sync_api as playwright_sync  # CI installs it: a skip there is a failure
else:
    playwright_sync = pytest.importorskip("playwright.sync_api")


def _require_browser() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/setup installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")


@dataclass
class Ledger:
    """A running registry and what was posted to it."""

    url: str
    world: World
    keys: Path
    process: RegistryProcess
    tasks: dict[str, str] = field(default_factory=dict)  # label -> task id
    secret: bytes = b""
    age_file: Path | None = None

    def client(self, name: str) -> Client:
        return Client(self.url, self.world.keys[name])

    def post(self, author: str, body: Any) -> str:
        with self.client(author) as client:
            return client.post_event(self.world.sign(author, body)).event_id

    def put_blob(self, author: str, data: bytes) -> str:
        with self.client(author) as client:
            return client.put_blob(data)


def populate(ledger: Ledger, tmp: Path) -> None:
    """Tasks in every state the pages show: a finished run with an encrypted output and a log,
    a rejection, a running task, and a second iteration (``parent``)."""
    identity = AgeIdentity.generate()
    ledger.age_file = tmp / "alice.age"
    save_identity(ledger.age_file, identity)
    ledger.secret = b"mean age: 47.25\n" * 3
    sealed = encrypt_bytes(ledger.secret, [identity.recipient])
    done = ledger.post(
        "alice",
        Task(
            image="myconsortium/avg:1",
            sites=("site-a", "site-b"),
            config={"column": "age"},
            label="first-mean",
        ),
    )
    ledger.tasks["done"] = done
    out_sha = ledger.put_blob("site-a", sealed)
    log_sha = ledger.put_blob("site-a", b"starting\nmean computed\n")
    ledger.post("site-a", Status(task=done, state=StatusState.ACCEPTED))
    ledger.post("site-a", Status(task=done, state=StatusState.STARTED))
    ledger.post(
        "site-a",
        Result(
            task=done,
            state=ResultState.COMPLETED,
            exit_code=0,
            image_digest="sha256:" + "ab" * 32,
            outputs=(Output(name="mean.json", sha256=out_sha, size=len(sealed)),),
            log=BlobRef(sha256=log_sha, size=23),
        ),
    )
    ledger.post(
        "site-b",
        Result(task=done, state=ResultState.REJECTED, reason="image not on this site's allowlist"),
    )
    ledger.tasks["next"] = ledger.post(
        "alice",
        Task(
            image="myconsortium/avg:1",
            sites=("site-a",),
            config={"column": "age", "step": 2},
            parent=done,
            label="second-mean",
        ),
    )
    ledger.tasks["live"] = ledger.post(
        "alice",
        Task(image="myconsortium/count:2", sites=("site-c",), config={}, label="live-count"),
    )
    ledger.post("site-c", Status(task=ledger.tasks["live"], state=StatusState.ACCEPTED))


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    tmp = tmp_path_factory.mktemp("webview")
    world = World()
    data = init_registry(tmp, world)
    process = RegistryProcess(data)
    url = process.start()
    ledger = Ledger(url=url, world=world, keys=tmp / "keys", process=process)
    try:
        populate(ledger, tmp)
        yield ledger
    finally:
        process.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _require_browser()
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


class Requests:
    """Every request the page made (the browser's own log)."""

    def __init__(self) -> None:
        self.urls: list[str] = []


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(10000)
    tab.requests = Requests()
    tab.on("request", lambda req: tab.requests.urls.append(req.url))
    tab.console_errors = []
    tab.on(
        "console", lambda msg: tab.console_errors.append(msg.text) if msg.type == "error" else None
    )
    tab.on("pageerror", lambda exc: tab.console_errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, url: str, key_file: Path, *, trust: bool = True) -> None:
    """Open the page, pick the key file, sign in, and (first visit) trust the registry."""
    page.goto(url + "/")
    page.set_input_files("#key-file", str(key_file))
    page.click("#sign-in-button")
    if trust:
        page.wait_for_selector("#confirm-pins")
        page.click("#trust-registry")


def verified(page: Any) -> None:
    page.wait_for_selector("#status .s-ok", timeout=15000)
