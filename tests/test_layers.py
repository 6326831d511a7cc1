"""Layers point one way: ``crypto`` <- ``ledger`` <- ``api``, ``siteclient`` <- ``cli``.

Each package is imported in a fresh interpreter and the modules it pulled in are listed, so a
transitive import (ledger -> some helper -> requests) is caught too.
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
