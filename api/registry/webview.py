"""The web view's static files (issue 14): served at ``/`` and ``/assets/<version>/<name>``.

The page does all its work in the browser (it verifies the registry's checkpoints and proofs
itself, like ``pht audit``); the registry only hands out the files of ``api/registry/web``, read
once when the app is created. Invariants:

- **Versioned assets**: ``<version>`` is a digest of every file's name and bytes, so an asset URL
  names exactly one content and is served ``immutable`` for a year; any other version is 404.
  ``/`` (the one HTML page, which names the current version) is served ``no-cache``. Writing the
  version into the page is the only change made to a file: nothing is rendered per request.
- **Content-Security-Policy** on every answer: scripts, styles, connections and images from the
  registry's own origin only, no inline script or style, no plugins, no framing, no forms.
- Only the files present at start are served, by exact name (no paths, no directory listing).
"""

from __future__ import annotations

import hashlib
from importlib import resources

import falcon

WEB_PACKAGE = "api.registry.web"
INDEX = "index.html"
VERSION_MARK = "@VERSION@"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
ASSET_ROUTES = frozenset({"/", "/assets/{version}/{name}"})


def _secure(resp: falcon.Response) -> None:
    resp.set_header("Content-Security-Policy", CSP)
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.set_header("Referrer-Policy", "no-referrer")


def load_files() -> dict[str, bytes]:
    """Every file of the web package by name (its top level; subfolders are not served)."""
    root = resources.files(WEB_PACKAGE)
    return {
        item.name: item.read_bytes()
        for item in root.iterdir()
        if item.is_file() and not item.name.startswith((".", "_"))
    }


def version_of(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:16]


class WebPage:
    """``GET /``: the page, naming the current asset version."""

    def __init__(self, page: bytes) -> None:
        self._page = page

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self._page
        resp.content_type = TYPES[".html"]
        resp.cache_control = ["no-cache"]
        _secure(resp)


class WebAsset:
    """``GET /assets/<version>/<name>``: one file of this version, cached for a year."""

    def __init__(self, files: dict[str, bytes], version: str) -> None:
        self._files = files
        self._version = version

    def on_get(self, req: falcon.Request, resp: falcon.Response, version: str, name: str) -> None:
        data = self._files.get(name)
        if version != self._version or data is None or name == INDEX:
            raise falcon.HTTPNotFound(
                description=f"no asset {name[:60]!r} in version {version[:20]!r}"
            )
        suffix = name[name.rfind(".") :] if "." in name else ""
        resp.data = data
        resp.content_type = TYPES.get(suffix, "application/octet-stream")
        resp.cache_control = ["public", "max-age=31536000", "immutable"]
        resp.etag = f'"{version}"'
        _secure(resp)


def add_web_routes(app: falcon.App[falcon.Request, falcon.Response]) -> str:
    """Serve the web view on ``app``; returns the asset version."""
    files = load_files()
    version = version_of(files)
    page = files[INDEX].replace(VERSION_MARK.encode(), version.encode())
    app.add_route("/", WebPage(page))
    app.add_route("/assets/{version}/{name}", WebAsset(files, version))
    return version
