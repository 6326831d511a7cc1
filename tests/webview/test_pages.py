"""The web view in Debian's chromium against a real ``pht serve``: sign-in, each page's data, the
live task page, keyboard and phone widths, and the CSP (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledger.bodies import Result, ResultState, Status, StatusState, Task
from ledger.checkpoint import key_fingerprint
from tests.webview.conftest import Ledger, screenshot, sign_in, verified

INJECT_INLINE_SCRIPT = """() => {
    const s = document.createElement('script');
    s.textContent = 'window.__inline = 1';
    document.body.append(s);
}"""
KEPT_KEY = """async () => {
    const db = await new Promise((ok) => {
        const r = indexedDB.open('pht-webview', 1);
        r.onsuccess = () => ok(r.result);
    });
    const key = await new Promise((ok) => {
        const r = db.transaction('keys').objectStore('keys').get('signing-key');
        r.onsuccess = () => ok(r.result);
    });
    return {extractable: key.key.extractable, type: key.key.type, usages: key.key.usages};
}"""
NO_ED25519 = """crypto.subtle.generateKey =
    () => Promise.reject(new DOMException('no Ed25519 here', 'NotSupportedError'));"""


def test_sign_in_pins_the_registry_and_shows_the_overview(ledger: Ledger, page: Any) -> None:
    with ledger.client("alice") as client:
        genesis = client.entry(0)
        size = client.entries(0, 1).size
    sign_in(page, ledger.url, ledger.keys / "alice.key", trust=False)
    page.wait_for_selector("#confirm-pins")
    screenshot(page, "first-visit-pins")
    assert page.inner_text("#pin-genesis") == genesis.hash
    assert page.inner_text("#pin-log-key") == genesis.event.event.body.log_key
    # the fingerprint `pht init` and `siteclient init` print for the same key
    assert page.inner_text("#pin-fingerprint") == key_fingerprint(genesis.event.event.body.log_key)
    page.click("#trust-registry")
    verified(page)
    assert page.inner_text("#who").startswith("Signed in as alice (researcher)")
    assert page.inner_text("#size") == str(size)
    results = page.inner_text("#results")
    assert "site-a" in results and "completed" in results
    assert "site-b" in results and "rejected" in results
    assert "live-count" in page.inner_text("#running")
    assert "second-mean" in page.inner_text("#running")
    assert "first-mean" not in page.inner_text("#running")
    screenshot(page, "overview")
    assert page.console_errors == [] or all("404" in e for e in page.console_errors)


def test_a_key_that_is_no_member_cannot_sign_in(ledger: Ledger, page: Any, tmp_path: Path) -> None:
    from crypto import SigningKey

    stranger = tmp_path / "mallory.key"
    SigningKey.generate().save(stranger)
    sign_in(page, ledger.url, stranger, trust=False)
    page.wait_for_selector("#sign-in-error:not(:empty)")
    assert "does not know this key" in page.inner_text("#sign-in-error")
    assert page.query_selector("#confirm-pins") is None


def test_a_file_that_is_no_key_is_refused(ledger: Ledger, page: Any, tmp_path: Path) -> None:
    wrong = tmp_path / "notes.txt"
    wrong.write_text("hello")
    sign_in(page, ledger.url, wrong, trust=False)
    page.wait_for_selector("#sign-in-error:not(:empty)")
    assert "not a private key file" in page.inner_text("#sign-in-error")


def test_a_kept_key_signs_in_again_after_reload(ledger: Ledger, page: Any) -> None:
    page.goto(ledger.url + "/")
    page.set_input_files("#key-file", str(ledger.keys / "audrey.key"))
    page.check("#remember")
    page.click("#sign-in-button")
    page.click("#trust-registry")
    verified(page)
    page.reload()
    verified(page)
    assert page.inner_text("#who").startswith("Signed in as audrey (auditor)")
    kept = page.evaluate(KEPT_KEY)
    assert kept == {"extractable": False, "type": "private", "usages": ["sign"]}
    page.click("#sign-out")
    page.wait_for_selector("#sign-in")


def test_ledger_page_filters_and_shows_raw_signed_json(ledger: Ledger, page: Any) -> None:
    sign_in(page, ledger.url, ledger.keys / "alice.key")
    verified(page)
    page.goto(ledger.url + "/#/ledger")
    page.wait_for_selector("#entries")
    with ledger.client("alice") as client:
        records, size = client.entry_records(0, 1000)
    rows = page.query_selector_all("#entries tbody tr")
    assert [int(r.get_attribute("data-index")) for r in rows] == list(range(size - 1, -1, -1))
    screenshot(page, "ledger")
    page.select_option("#f-kind", "result")
    page.click("#ledger-filter button")
    page.wait_for_function("() => document.querySelectorAll('#entries tbody tr').length === 2")
    assert page.inner_text("#entries tbody").count("result") == 2
    page.goto(ledger.url + "/#/ledger?site=site-c")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#entries tbody tr')]"
        ".every(r => /site-c/.test(r.innerText))"
    )
    kinds = [r.inner_text().split("\t")[1] for r in page.query_selector_all("#entries tbody tr")]
    assert sorted(kinds) == ["status", "task"]
    page.goto(ledger.url + f"/#/ledger?task={ledger.tasks['done'][:10]}")
    page.wait_for_function("() => document.querySelectorAll('#entries tbody tr').length === 5")
    row = page.query_selector("#entries tbody tr[data-index='1']")
    row.query_selector("summary").click()
    assert row.query_selector("pre").inner_text() == records[1].decode()
    page.goto(ledger.url + "/#/ledger?author=site-b")
    page.wait_for_function("() => document.querySelectorAll('#entries tbody tr').length === 1")


def test_task_page_shows_image_config_timeline_outputs_and_iterations(
    ledger: Ledger, page: Any
) -> None:
    sign_in(page, ledger.url, ledger.keys / "alice.key")
    verified(page)
    done = ledger.tasks["done"]
    page.goto(ledger.url + f"/#/task/{done}")
    page.wait_for_selector("#task")
    assert page.inner_text("#image") == "myconsortium/avg:1"
    assert json.loads(page.inner_text("#config")) == {"column": "age"}
    site_a = page.inner_text("[data-site='site-a']")
    for state in ("accepted", "started", "completed"):
        assert state in site_a
    assert "sha256:" + "ab" * 32 in site_a
    assert "mean.json" in site_a and "site-a.log" in site_a and "23 B" in site_a
    assert "image not on this site's allowlist" in page.inner_text("[data-site='site-b']")
    assert page.get_attribute("#iterations a", "href") == f"#/task/{ledger.tasks['next']}"
    screenshot(page, "task")
    with page.expect_download() as info:
        page.click("[data-file='site-a.log'] .dl-raw")
    assert Path(info.value.path()).read_bytes() == b"starting\nmean computed\n"
    page.click("#iterations a")
    page.wait_for_selector(f"#task[data-task='{ledger.tasks['next']}']")
    assert done[:12] in page.inner_text("#iterations")


def test_task_page_updates_live_when_a_site_posts_its_result(ledger: Ledger, page: Any) -> None:
    sign_in(page, ledger.url, ledger.keys / "alice.key")
    verified(page)
    live = ledger.tasks["live"]
    page.goto(ledger.url + f"/#/task/{live}")
    page.wait_for_selector("[data-site='site-c'] [data-state='accepted']")
    assert page.query_selector("[data-site='site-c'] [data-state='completed']") is None
    ledger.post("site-c", Status(task=live, state=StatusState.STARTED))
    page.wait_for_selector("[data-site='site-c'] [data-state='started']", timeout=10000)
    ledger.post("site-c", Result(task=live, state=ResultState.COMPLETED, exit_code=0))
    page.wait_for_selector("[data-site='site-c'] [data-state='completed']", timeout=10000)
    screenshot(page, "task-live")


def test_site_and_members_pages(ledger: Ledger, page: Any) -> None:
    sign_in(page, ledger.url, ledger.keys / "alice.key")
    verified(page)
    page.goto(ledger.url + "/#/site/site-b")
    page.wait_for_selector("#site")
    assert "image not on this site's allowlist" in page.inner_text("#rejections")
    assert "first-mean" in page.inner_text("#runs")
    screenshot(page, "site-b")
    page.goto(ledger.url + "/#/site/site-a")
    page.wait_for_selector("#site[data-site='site-a']")
    assert "sha256:" + "ab" * 32 in page.inner_text("#digests")
    screenshot(page, "site-a")
    page.goto(ledger.url + "/#/members")
    page.wait_for_selector("#member-table")
    rows = {
        r.get_attribute("data-member"): r.inner_text()
        for r in page.query_selector_all("#member-table tbody tr")
    }
    assert set(rows) == {"admin", "alice", "audrey", "site-a", "site-b", "site-c"}
    assert "researcher" in rows["alice"] and "active" in rows["alice"]
    assert ledger.world.keys["site-a"].key_id[:16] in rows["site-a"]
    screenshot(page, "members")


def test_phone_width_and_keyboard(ledger: Ledger, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, ledger.url, ledger.keys / "alice.key")
        verified(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the overview scrolls sideways on a phone: {width}px"
        screenshot(page, "overview-phone")
        page.goto(ledger.url + f"/#/task/{ledger.tasks['done']}")
        page.wait_for_selector("#task")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "task-phone")
        # Keyboard only: tab from the top to the Ledger link and press Enter.
        page.goto(ledger.url + "/#/overview")
        page.wait_for_selector("#overview")
        page.focus(".skip")  # the first element of the page
        seen = []
        for _ in range(10):
            page.keyboard.press("Tab")
            seen.append(page.evaluate("() => document.activeElement.textContent"))
            if page.evaluate("() => document.activeElement.dataset.page") == "ledger":
                break
        assert seen[-1] == "Ledger", seen
        page.keyboard.press("Enter")
        page.wait_for_selector("#entries")
        assert page.evaluate("() => document.activeElement.id") == "main"
    finally:
        context.close()


def test_csp_holds_no_inline_script_and_no_other_origin(ledger: Ledger, page: Any) -> None:
    import requests

    answer = requests.get(ledger.url + "/", timeout=10)
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert answer.headers["Cache-Control"] == "no-cache"
    html = answer.text
    assert "<script>" not in html and "<script " in html
    for tag in html.split("<script")[1:]:
        assert 'src="/assets/' in tag.split(">", 1)[0] and tag.split(">", 1)[1].startswith(
            "</script>"
        )
    asset = html.split('<script type="module" src="')[1].split('"')[0]
    cached = requests.get(ledger.url + asset, timeout=10)
    assert "immutable" in cached.headers["Cache-Control"]
    stale = requests.get(ledger.url + asset.replace("/assets/", "/assets/0"), timeout=10)
    assert stale.status_code == 404

    sign_in(page, ledger.url, ledger.keys / "alice.key")
    verified(page)
    for route in ("ledger", f"task/{ledger.tasks['done']}", "site/site-a", "members", "keys"):
        page.goto(f"{ledger.url}/#/{route}")
        page.wait_for_selector(f"body[data-page='{route.split('/')[0]}']")
    assert page.requests.urls
    assert all(url.startswith(ledger.url + "/") for url in page.requests.urls), [
        u for u in page.requests.urls if not u.startswith(ledger.url)
    ]
    assert not [e for e in page.console_errors if "Content Security Policy" in e]
    # An injected inline script is refused by the browser, which says why.
    page.evaluate(INJECT_INLINE_SCRIPT)
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.__inline === undefined")
    assert [e for e in page.console_errors if "Content Security Policy" in e]


def test_without_ed25519_the_page_verifies_nothing(ledger: Ledger, browser: Any) -> None:
    context = browser.new_context()
    context.add_init_script(NO_ED25519)
    page = context.new_page()
    try:
        page.goto(ledger.url + "/")
        page.wait_for_selector("#unsupported")
        assert "lacks Ed25519" in page.inner_text("#unsupported")
        assert page.query_selector("#sign-in") is None
        screenshot(page, "unsupported-browser")
    finally:
        context.close()


def test_decrypted_output_download_gives_the_right_bytes(ledger: Ledger, page: Any) -> None:
    sign_in(page, ledger.url, ledger.keys / "alice.key")
    verified(page)
    page.goto(ledger.url + "/#/keys")
    page.set_input_files("#age-file", str(ledger.age_file))
    page.click("#age-load")
    page.wait_for_selector("#age-status:has-text('is loaded')")
    screenshot(page, "keys")
    page.goto(ledger.url + f"/#/task/{ledger.tasks['done']}")
    page.wait_for_selector("[data-file='mean.json'] .dl-decrypted")
    with page.expect_download() as info:
        page.click("[data-file='mean.json'] .dl-decrypted")
    assert info.value.suggested_filename == "mean.json"
    assert Path(info.value.path()).read_bytes() == ledger.secret
    with page.expect_download() as info:
        page.click("[data-file='mean.json'] .dl-raw")
    sealed = Path(info.value.path()).read_bytes()
    assert info.value.suggested_filename == "mean.json.age"
    assert sealed.startswith(b"age-encryption.org/v1\n") and ledger.secret not in sealed
    screenshot(page, "task-decrypted")


def test_an_identity_the_output_is_not_for_fails_clearly(
    ledger: Ledger, page: Any, tmp_path: Path
) -> None:
    from crypto.age import AgeIdentity, save_identity

    other = tmp_path / "bob.age"
    save_identity(other, AgeIdentity.generate())
    sign_in(page, ledger.url, ledger.keys / "alice.key")
    verified(page)
    page.goto(ledger.url + "/#/keys")
    page.set_input_files("#age-file", str(other))
    page.click("#age-load")
    page.wait_for_selector("#age-status:has-text('is loaded')")
    page.goto(ledger.url + f"/#/task/{ledger.tasks['done']}")
    page.click("[data-file='mean.json'] .dl-decrypted")
    page.wait_for_selector("[data-file='mean.json'] .note:has-text('failed')")


def summary_mode(page: Any, ledger: Ledger) -> None:
    """Sign in with the page told to treat the ledger as too large to read whole."""
    sign_in(page, ledger.url, ledger.keys / "alice.key")
    verified(page)
    page.evaluate("() => localStorage.setItem('pht-webview:scan-limit', '0')")
    sign_in(page, ledger.url, ledger.keys / "alice.key", trust=False)
    verified(page)


def test_large_ledger_mode_proves_each_entry_it_shows(ledger: Ledger, page: Any) -> None:
    with ledger.client("alice") as client:
        size = client.entries(0, 1).size
    summary_mode(page, ledger)
    assert page.inner_text("#size") == str(size)
    assert "every entry shown proven included" in page.inner_text("#verification")
    assert "completed" in page.inner_text("#results")
    proofs = [u for u in page.requests.urls if "/v1/proofs/inclusion" in u]
    assert proofs, "the page showed entries without proving them"
    page.goto(ledger.url + "/#/ledger")
    page.wait_for_selector("#entries")
    rows = page.query_selector_all("#entries tbody tr")
    assert [int(r.get_attribute("data-index")) for r in rows] == list(range(size - 1, -1, -1))
    page.goto(ledger.url + f"/#/task/{ledger.tasks['done']}")
    page.wait_for_selector("#task")
    assert page.inner_text("#image") == "myconsortium/avg:1"
    assert "completed" in page.inner_text("[data-site='site-a']")
    assert "mean.json" in page.inner_text("[data-site='site-a']")
    assert timeline_states(page, "site-a") == ["accepted", "started", "completed"]
    assert timeline_states(page, "site-b") == ["rejected"]
    screenshot(page, "task-large-ledger-mode")


def timeline_states(page: Any, site: str) -> list[str]:
    items = page.query_selector_all(f"[data-site='{site}'] .timeline li")
    return [item.get_attribute("data-state") for item in items]


def test_large_ledger_mode_task_timeline_updates_live(ledger: Ledger, page: Any) -> None:
    task = ledger.post("alice", Task(image="myconsortium/avg:1", sites=("site-b",), config={}))
    ledger.post("site-b", Status(task=task, state=StatusState.ACCEPTED))
    summary_mode(page, ledger)
    page.goto(ledger.url + f"/#/task/{task}")
    page.wait_for_selector("[data-site='site-b'] [data-state='accepted']")
    ledger.post("site-b", Status(task=task, state=StatusState.STARTED))
    page.wait_for_selector("[data-site='site-b'] [data-state='started']", timeout=10000)
    ledger.post("site-b", Result(task=task, state=ResultState.FAILED, exit_code=1))
    page.wait_for_selector("[data-site='site-b'] [data-state='failed']", timeout=10000)
    assert timeline_states(page, "site-b") == ["accepted", "started", "failed"]


@pytest.mark.parametrize("mode", ["whole ledger", "large ledger"])
def test_ledger_page_pages_through_the_entries(ledger: Ledger, page: Any, mode: str) -> None:
    with ledger.client("alice") as client:
        size = client.entries(0, 1).size
    for n in range(max(0, 60 - size)):
        ledger.post("alice", Task(image="myconsortium/avg:1", sites=("site-b",), config={"p": n}))
    size = max(size, 60)
    if mode == "large ledger":
        summary_mode(page, ledger)
    else:
        sign_in(page, ledger.url, ledger.keys / "alice.key")
        verified(page)
    page.goto(ledger.url + "/#/ledger")
    page.wait_for_selector("#entries")
    first = [
        int(r.get_attribute("data-index")) for r in page.query_selector_all("#entries tbody tr")
    ]
    assert first == list(range(size - 1, size - 51, -1))
    page.click(".pager .older >> nth=0")
    page.wait_for_selector(f"#entries tbody tr[data-index='{size - 51}']")
    second = [
        int(r.get_attribute("data-index")) for r in page.query_selector_all("#entries tbody tr")
    ]
    assert second == list(range(size - 51, max(-1, size - 101), -1))
    assert page.query_selector(".pager .newer") is not None
