"""Attacks on the web view, each named (issue 14): a registry that lies gets the red banner,
naming what failed, with both checkpoints for download, and none of its data on the page.

The lies are served by :class:`tests.webview.proxy.TamperingProxy` in front of real registries:
real signed checkpoints and entries, replayed, re-signed by another key or edited.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.wire.pages import entries_page
from crypto import SigningKey
from ledger import tiles
from ledger.bodies import Status, StatusState, Task
from ledger.canonical import canonical_bytes
from ledger.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from ledger.merkle import MerkleTree
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World
from tests.webview.conftest import Ledger, screenshot, sign_in, verified
from tests.webview.proxy import TamperingProxy

ENTRIES = ("/v1/events?", "/v1/tile/entries/")  # where the page reads entries from


@pytest.fixture(scope="module")
def forked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ledger, Ledger]]:
    """Two registries with the same log key and genesis whose histories part after entry 2."""
    tmp = tmp_path_factory.mktemp("forked")
    world = World()
    data = init_registry(tmp, world)
    first = RegistryProcess(data)
    first.start()
    honest = Ledger(url=first.url, world=world, keys=tmp / "keys", process=first)
    honest.post("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": 1}))
    honest.post("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": 2}))
    first.stop()
    shutil.copytree(data, tmp / "fork")
    first.start()
    second = RegistryProcess(tmp / "fork", log=tmp / "fork.log")
    second.start()
    other = Ledger(url=second.url, world=world, keys=tmp / "keys", process=second)
    try:
        yield honest, other
    finally:
        first.stop()
        second.stop()


@pytest.fixture
def proxy(forked: tuple[Ledger, Ledger]) -> Iterator[TamperingProxy]:
    lying = TamperingProxy(forked[0].url)
    try:
        yield lying
    finally:
        lying.close()


def checkpoint_of(ledger: Ledger) -> bytes:
    with ledger.client("alice") as client:
        return client.checkpoint()


def assert_banner(page: Any, what: str, name: str) -> str:
    page.wait_for_selector("#banner")
    screenshot(page, f"attack-{name}")
    text = page.inner_text("#banner")
    assert f"Verification failed: {what}" in text, text
    shown = page.evaluate("() => [...document.getElementById('main').children].map(e => e.id)")
    assert shown == ["banner"], f"data shown beside the banner: {shown}"
    assert page.is_hidden("#nav")
    assert page.inner_text("#status").startswith("FAILED")
    return text


def evidence(page: Any, button: str) -> bytes:
    with page.expect_download() as info:
        page.click(button)
    return Path(info.value.path()).read_bytes()


def first_visit(page: Any, proxy: TamperingProxy, ledger: Ledger) -> None:
    sign_in(page, proxy.url, ledger.keys / "alice.key")
    verified(page)


def test_checkpoint_signed_by_another_key(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, _ = forked
    first_visit(page, proxy, honest)
    real = checkpoint_of(honest)
    body = Checkpoint.parse_body(real.split(b"\n\n")[0] + b"\n")
    forged = sign_checkpoint(body, SigningKey.generate())
    proxy.tamper = lambda path, status, data: forged if path == "/v1/checkpoint" else None
    sign_in(page, proxy.url, honest.keys / "alice.key", trust=False)
    assert "not signed by the pinned log key" in assert_banner(
        page, "checkpoint signature", "another-key"
    )
    assert evidence(page, "#evidence-served") == forged
    assert evidence(page, "#evidence-previous") == real


def test_checkpoint_with_a_forged_signature_under_the_pinned_key_name(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, _ = forked
    first_visit(page, proxy, honest)
    real = checkpoint_of(honest)
    text, signatures = real.split(b"\n\n")
    bigger = text.replace(b"\n" + str(len(text)).encode(), b"")  # body kept, size edited below
    lines = text.split(b"\n")
    lines[1] = str(int(lines[1]) + 1).encode()
    forged = b"\n".join(lines) + b"\n\n" + signatures
    assert bigger
    proxy.tamper = lambda path, status, data: forged if path == "/v1/checkpoint" else None
    sign_in(page, proxy.url, honest.keys / "alice.key", trust=False)
    assert "does not verify" in assert_banner(page, "checkpoint signature", "forged-signature")


def test_rolled_back_checkpoint(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, _ = forked
    old = checkpoint_of(honest)
    honest.post("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": 3}))
    first_visit(page, proxy, honest)
    newest = checkpoint_of(honest)
    assert newest != old
    proxy.tamper = lambda path, status, data: old if path == "/v1/checkpoint" else None
    sign_in(page, proxy.url, honest.keys / "alice.key", trust=False)
    assert_banner(page, "rolled-back checkpoint", "rolled-back")
    assert evidence(page, "#evidence-served") == old
    assert evidence(page, "#evidence-previous") == newest


def test_entry_that_does_not_match_its_inclusion_proof(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, _ = forked
    first_visit(page, proxy, honest)
    page.goto(proxy.url + "/#/overview")
    page.wait_for_selector("#overview")

    def edit(path: str, status: int, data: bytes) -> bytes | None:
        if path.startswith("/v1/events"):
            return data.replace(b'"n":41', b'"n":42')
        return None

    proxy.tamper = edit
    # A new entry arrives while the page is open: the page proves it before showing it.
    honest.post("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": 41}))
    text = assert_banner(page, "inclusion proof", "inclusion")
    assert "does not match its inclusion proof" in text


def test_entries_that_do_not_hash_to_the_checkpoint(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, _ = forked
    proxy.tamper = lambda path, status, data: (
        data.replace(b'"n":2', b'"n":7') if path.startswith(ENTRIES) else None
    )
    sign_in(page, proxy.url, honest.keys / "alice.key")
    assert "do not hash to the checkpoint's root" in assert_banner(page, "entries", "entries")


def test_history_rewritten_between_two_visits(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, other = forked
    honest.post("alice", Task(image="myconsortium/avg:1", sites=("site-a",), config={"n": 10}))
    first_visit(page, proxy, honest)
    seen = checkpoint_of(honest)
    # The other registry holds the same genesis and log key but another history, and is longer.
    for n in range(20, 20 + int(seen.split(b"\n")[1]) + 1):
        other.post("alice", Task(image="myconsortium/avg:1", sites=("site-b",), config={"n": n}))
    proxy.backend = other.url
    sign_in(page, proxy.url, honest.keys / "alice.key", trust=False)
    text = assert_banner(page, "history rewritten", "history-rewritten")
    assert "not consistent" in text
    assert evidence(page, "#evidence-previous") == seen
    assert evidence(page, "#evidence-served") == checkpoint_of(other)


def test_wrong_log_key_pinned(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, _ = forked
    first_visit(page, proxy, honest)
    wrong = verifier_key("pht.example/test", SigningKey.generate().public)
    page.evaluate(
        """(wrong) => {
            const name = `pht-webview:${location.origin}`;
            const pins = JSON.parse(localStorage.getItem(name));
            pins.logKey = wrong;
            localStorage.setItem(name, JSON.stringify(pins));
        }""",
        wrong,
    )
    sign_in(page, proxy.url, honest.keys / "alice.key", trust=False)
    assert_banner(page, "wrong log key pinned", "wrong-log-key")
    stored = json.loads(
        page.evaluate("() => localStorage.getItem(`pht-webview:${location.origin}`)")
    )
    assert stored["logKey"] == wrong  # the page keeps its pins: it never re-pins on its own


def test_entry_that_does_not_match_its_inclusion_proof_in_large_ledger_mode(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, _ = forked
    with honest.client("alice") as client:
        task = client.entry(1).event.event.id
    first_visit(page, proxy, honest)
    page.evaluate("() => localStorage.setItem('pht-webview:scan-limit', '0')")
    proxy.tamper = lambda path, status, data: (
        data.replace(b'"n":1', b'"n":5') if path == "/v1/events/1" else None
    )
    # Straight to the task page: it fetches the task's entry on its own and proves it.
    page.goto(f"{proxy.url}/#/task/{task}")
    page.reload()
    page.set_input_files("#key-file", str(honest.keys / "alice.key"))
    page.click("#sign-in-button")
    text = assert_banner(page, "inclusion proof", "inclusion-large-ledger")
    assert "entry 1 does not match its inclusion proof" in text


def forged_history(
    ledger: Ledger, edit: Callable[[list[bytes]], list[bytes]]
) -> tuple[bytes, bytes]:
    """The registry's own log key (read from its data directory) signing a tree of edited
    entries: the checkpoint note, and the entries page and entry bundle it would serve."""
    log_key = SigningKey.load(ledger.process.data / "log.key")
    with ledger.client("alice") as client:
        records, _ = client.entry_records(0, 1000)
    records = edit(records)
    tree = MerkleTree()
    tree.extend(hashlib.sha256(b"\0" + r).digest() for r in records)
    note = sign_checkpoint(
        Checkpoint(origin=ledger.world.origin, size=len(records), root=tree.root()), log_key
    )
    page = entries_page(records, len(records), len(records))
    entries = tiles.bundle(records, 0)  # a small ledger: one partial bundle holds it all

    def serve(path: str, status: int, data: bytes) -> bytes | None:
        if path == "/v1/checkpoint":
            return note
        if path.startswith("/v1/events?from=0"):
            return page
        if path == f"/v1/tile/entries/000.p/{len(records)}":
            return entries
        if path.startswith("/v1/proofs/inclusion?"):
            query = urllib.parse.parse_qs(path.split("?", 1)[1])
            index, size = int(query["index"][0]), int(query["size"][0])
            proof = [h.hex() for h in tree.inclusion_proof(index, size)]
            return json.dumps({"index": index, "size": size, "proof": proof}).encode()
        return None

    return serve


@pytest.mark.parametrize(
    ("attack", "what", "detail"),
    [
        ("event_not_signed_by_its_author", "event signature", "does not verify"),
        ("entry_not_linked_to_the_one_before", "entries", "does not link to entry"),
    ],
)
def test_a_tree_signed_by_the_log_key_over_forged_entries(
    forked: tuple[Ledger, Ledger],
    proxy: TamperingProxy,
    page: Any,
    attack: str,
    what: str,
    detail: str,
) -> None:
    honest, _ = forked

    def edit(records: list[bytes]) -> list[bytes]:
        last = records[-1]
        if attack == "event_not_signed_by_its_author":
            assert b'"sites":["site-a"]' in last
            return [*records[:-1], last.replace(b'"sites":["site-a"]', b'"sites":["site-b"]')]
        return [*records[:-1], _relink(last)]

    proxy.tamper = forged_history(honest, edit)
    sign_in(page, proxy.url, honest.keys / "alice.key")
    assert detail in assert_banner(page, what, attack.replace("_", "-"))


def _relink(record: bytes) -> bytes:
    """The entry with another ``prev`` (64 hex digits, still well formed)."""
    value = json.loads(record)
    value["prev"] = "f" * 64
    return canonical_bytes(value)


def test_timeline_naming_another_tasks_entry_in_large_ledger_mode(
    forked: tuple[Ledger, Ledger], proxy: TamperingProxy, page: Any
) -> None:
    honest, _ = forked
    with honest.client("alice") as client:
        task, other = (client.entry(i).event.event.id for i in (1, 2))
    with honest.client("site-a") as client:
        signed = honest.world.sign("site-a", Status(task=other, state=StatusState.ACCEPTED))
        index = client.post_event(signed).index  # site-a's real entry, but for the other task
    first_visit(page, proxy, honest)
    page.evaluate("() => localStorage.setItem('pht-webview:scan-limit', '0')")

    def claim(path: str, status: int, data: bytes) -> bytes | None:
        if path != f"/v1/tasks/{task}":
            return None
        view = json.loads(data)
        view["sites"]["site-a"] = {
            "state": "accepted",
            "index": index,
            "finished": False,
            "history": [index],
        }
        return json.dumps(view).encode()

    proxy.tamper = claim
    page.goto(f"{proxy.url}/#/task/{task}")
    page.reload()
    page.set_input_files("#key-file", str(honest.keys / "alice.key"))
    page.click("#sign-in-button")
    text = assert_banner(page, "task timeline", "timeline-foreign-entry")
    assert f"names entry {index}, which is not a status or result of this task" in text
