"""The web view's files as the registry ships them (api/registry/webview.py)."""

from __future__ import annotations

import hashlib
import re

from api.registry.webview import INDEX, VERSION_MARK, load_files, version_of


def test_every_module_the_page_imports_is_shipped() -> None:
    files = load_files()
    imports = {
        target
        for name, data in files.items()
        if name.endswith(".js")
        for target in re.findall(r'(?:from|import\()\s*"\./([^"]+)"', data.decode())
    }
    assert imports, "no imports found: the pattern is wrong"
    assert imports <= set(files), imports - set(files)
    assert f"/assets/{VERSION_MARK}/app.js" in files[INDEX].decode()


def test_the_page_has_no_inline_script_or_style() -> None:
    html = load_files()[INDEX].decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html
    assert re.findall(r"\son[a-z]+=", html) == []  # no inline event handlers


def test_the_version_names_the_content() -> None:
    files = load_files()
    changed = {**files, "app.js": files["app.js"] + b"\n"}
    assert version_of(files) == version_of(dict(files))
    assert version_of(changed) != version_of(files)


def test_the_vendored_age_library_is_the_one_recorded() -> None:
    files = load_files()
    recorded = re.search(r"sha256\(age-typage\.js\) = ([0-9a-f]{64})", files["vendor.txt"].decode())
    assert recorded is not None
    assert hashlib.sha256(files["age-typage.js"]).hexdigest() == recorded[1]
