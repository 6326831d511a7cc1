"""Layers point one way: ``crypto`` <- ``ledger`` <- ``api``, ``siteclient`` <- ``cli``; and
inside the packages, the sub-packages point one way too (``ARROWS``).

Each package is imported in a fresh interpreter and the modules it pulled in are listed, so a
transitive import (ledger -> some helper -> requests) is caught too; a broken arrow is reported
with the chain of imports that crosses it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Web, HTTP and Docker libraries, and the packages above the core in the layering.
OUTER = {"falcon", "waitress", "requests", "docker", "urllib3", "http.client", "http.server"}
OUTER |= {"api", "siteclient", "cli"}
FORBIDDEN = {"crypto": OUTER | {"ledger", "socket"}, "ledger": OUTER}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_core_packages_import_no_web_http_or_docker_library(package: str) -> None:
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    bad = sorted(
        name
        for name in loaded
        if name in FORBIDDEN[package] or name.split(".")[0] in FORBIDDEN[package]
    )
    assert not bad, f"{package} imports {bad}"


# Arrows inside the packages: (rule, the modules imported, what they must not load, exceptions).
# "ledger core" is every module at ledger/*.py, the sub-package ledger.store excluded.
ARROWS = [
    pytest.param(
        "ledger core",
        ("ledger.store",),
        (),
        id="ledger_core_never_imports_the_store",
    ),
    pytest.param(
        "api.wire", ("api.registry", "api.client"), (), id="api_wire_imports_no_server_or_client"
    ),
    pytest.param(
        "api.client", ("api.registry",), (), id="api_client_never_imports_the_registry_server"
    ),
    pytest.param(
        "siteclient", ("api.registry",), (), id="siteclient_never_imports_the_registry_server"
    ),
    pytest.param(
        "siteclient.fileservice",
        ("siteclient.run",),
        (),
        id="the_fileservice_never_imports_the_run_side",
    ),
    # The one arrow from the run side into the FileService: siteclient.fileservice.inbox, the
    # read side of the disk format both share (the executor reads the files delivered to it).
    pytest.param(
        "siteclient.run",
        ("siteclient.fileservice",),
        ("siteclient.fileservice", "siteclient.fileservice.inbox"),
        id="the_run_side_reads_only_the_fileservice_inbox",
    ),
]

# Imports every module of the subject in a fresh interpreter and prints, for each module loaded,
# the module whose import statement loaded it ("__main__" for the subject's own modules).
_WATCH = """
import importlib, json, pkgutil, sys
importer = {}
class Watch:
    def find_spec(self, name, path=None, target=None):
        frame = sys._getframe(1)
        while frame and frame.f_globals.get("__name__", "").startswith(
            ("importlib", "_frozen_importlib")
        ):
            frame = frame.f_back
        importer.setdefault(name, frame.f_globals.get("__name__") if frame else None)
        return None
sys.meta_path.insert(0, Watch())
subject = SUBJECT
if subject == "ledger core":
    pkg = importlib.import_module("ledger")
    names = [f"ledger.{i.name}" for i in pkgutil.iter_modules(pkg.__path__) if not i.ispkg]
else:
    pkg = importlib.import_module(subject)
    names = [i.name for i in pkgutil.walk_packages(pkg.__path__, subject + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({name: importer.get(name) for name in sys.modules}))
"""


_ROOTS = (None, "__main__", "pkgutil")  # the subject's own modules, imported by the walk


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _chain(name: str, importer: dict[str, str | None]) -> str:
    """``subject module -> ... -> name``: who pulled ``name`` in."""
    path = [name]
    while (parent := importer.get(path[-1])) not in _ROOTS and parent not in path:
        path.append(parent)
    return " -> ".join(reversed(path))


@pytest.mark.parametrize(("subject", "forbidden", "allowed"), ARROWS)
def test_arrows_inside_the_packages(
    subject: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    code = _WATCH.replace("SUBJECT", repr(subject))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    importer: dict[str, str | None] = json.loads(out)
    bad = sorted(n for n in importer if _within(n, forbidden) and n not in allowed)
    assert not bad, f"{subject} imports " + "; ".join(_chain(n, importer) for n in bad)
