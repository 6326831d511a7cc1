"""The pages with a registry that has the read endpoints of INTERFACES.md (``/v1/sites``,
``/v1/members``, ``/v1/tasks``): answered here by the test proxy in front of a real registry, in
the agreed shapes, until the registry serves them itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.webview.conftest import Ledger, screenshot, sign_in, verified
from tests.webview.proxy import TamperingProxy


def sites_answer(size: int) -> bytes:
    def site(name: str, presence: str, seen: str | None) -> dict[str, Any]:
        return {
            "site": name,
            "organization": None,
            "presence": presence,
            "last_seen": seen,
            "verified_size": size if seen else None,
            "behind": 0 if seen else None,
            "running": 1 if presence == "online" else None,
            "docker": True,
            "sparql": True,
            "version": "1",
        }

    return json.dumps(
        {
            "size": size,
            "interval_s": 5,
            "sites": [
                site("site-a", "online", "2026-01-01T00:00:00Z"),
                site("site-b", "lagging", "2026-01-01T00:00:00Z"),
                site("site-c", "offline", None),
            ],
        }
    ).encode()


def members_answer(ledger: Ledger, size: int) -> bytes:
    members = [
        {
            "name": name,
            "role": ledger.world.roles[name].value,
            "key_id": key.key_id,
            "public_key": key.public.b64(),
            "encryption_key": None,
            "organization": None,
            "file_service": None,
            "index": 0,
            "revoked": None,
        }
        for name, key in ledger.world.keys.items()
    ]
    return json.dumps({"size": size, "members": members}).encode()


@pytest.fixture
def proxy(ledger: Ledger) -> Iterator[TamperingProxy]:
    with ledger.client("alice") as client:
        size = client.entries(0, 1).size
    newer = TamperingProxy(ledger.url)
    newer.answers["/v1/sites"] = sites_answer(size)
    newer.answers["/v1/members"] = members_answer(ledger, size)
    try:
        yield newer
    finally:
        newer.close()


def test_overview_and_site_page_show_presence(
    ledger: Ledger, proxy: TamperingProxy, page: Any
) -> None:
    sign_in(page, proxy.url, ledger.keys / "alice.key")
    verified(page)
    counts = page.inner_text("#sites")
    for presence in ("online 1", "lagging 1", "offline 1", "never 0"):
        assert presence in counts, counts
    screenshot(page, "overview-with-presence")
    page.goto(proxy.url + "/#/site/site-a")
    page.wait_for_selector("#presence")
    assert page.inner_text("#presence").startswith("online")
    assert "1 running" in page.inner_text("#presence")
    page.goto(proxy.url + "/#/site/site-c")
    page.wait_for_selector("#site[data-site='site-c'] #presence")
    assert "never seen" in page.inner_text("#presence")


def test_members_from_the_read_model_in_large_ledger_mode(
    ledger: Ledger, proxy: TamperingProxy, page: Any
) -> None:
    sign_in(page, proxy.url, ledger.keys / "alice.key")
    verified(page)
    page.evaluate("() => localStorage.setItem('pht-webview:scan-limit', '0')")
    sign_in(page, proxy.url, ledger.keys / "alice.key", trust=False)
    verified(page)
    assert page.inner_text("#who").startswith("Signed in as alice (researcher)")
    page.goto(proxy.url + "/#/members")
    page.wait_for_selector("#member-table")
    names = [
        r.get_attribute("data-member")
        for r in page.query_selector_all("#member-table tr[data-member]")
    ]
    assert sorted(names) == sorted(ledger.world.keys)
    assert "read model" in page.inner_text("#members")


def test_large_ledger_mode_checks_signatures_with_proven_member_keys(
    ledger: Ledger, proxy: TamperingProxy, page: Any
) -> None:
    sign_in(page, proxy.url, ledger.keys / "alice.key")
    verified(page)
    page.evaluate("() => localStorage.setItem('pht-webview:scan-limit', '0')")
    sign_in(page, proxy.url, ledger.keys / "alice.key", trust=False)
    verified(page)
    assert "signature checked with its author's key" in page.inner_text("#verification")


def test_a_member_list_naming_an_entry_without_that_key_is_caught(
    ledger: Ledger, proxy: TamperingProxy, page: Any
) -> None:
    with ledger.client("alice") as client:
        size = client.entries(0, 1).size
    members = json.loads(members_answer(ledger, size))
    for member in members["members"]:
        if member["name"] == "alice":
            member["index"] = 1  # a task entry: it holds no member key
    proxy.answers["/v1/members"] = json.dumps(members).encode()
    sign_in(page, proxy.url, ledger.keys / "alice.key")
    verified(page)
    page.evaluate("() => localStorage.setItem('pht-webview:scan-limit', '0')")
    sign_in(page, proxy.url, ledger.keys / "alice.key", trust=False)
    page.wait_for_selector("#banner")
    assert "Verification failed: member key" in page.inner_text("#banner")
    screenshot(page, "attack-member-key")
