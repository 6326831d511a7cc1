"""A real registry process plus one configured site, for end-to-end tests of the site client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from api.client.analyst import Analyst
from api.client.registry import Client
from ledger.bodies import Limits
from siteclient.main import main as siteclient
from tests.api.registry_process import RegistryProcess, init_registry
from tests.ledger.factory import World

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SiteEnv:
    tmp: Path
    world: World = field(default_factory=World)
    registry: RegistryProcess | None = None

    def start(self) -> SiteEnv:
        data = init_registry(self.tmp, self.world)
        self.registry = RegistryProcess(data)
        self.registry.start()
        return self

    @property
    def url(self) -> str:
        assert self.registry is not None
        return self.registry.url

    def client(self, member: str = "alice") -> Client:
        return Client(self.url, self.world.keys[member])

    def analyst(self) -> Analyst:
        return Analyst(self.client(), self.world.keys["alice"])

    def write_config(self, site: str = "site-a", **overrides: Any) -> Path:
        folder = self.tmp / site
        folder.mkdir(exist_ok=True)
        config: dict[str, Any] = {
            "site": site,
            "key_file": str(self.tmp / "keys" / f"{site}.key"),
            "registry": self.url,
            "log_key": None,
            "genesis": None,
            "sparql_endpoint": "http://sparql.invalid/query",
            "allowed_images": [
                r"127\.0\.0\.1:5000/pht-test/rt-[a-z0-9-]+:[\w.-]+(@sha256:[0-9a-f]{64})?"
            ],
            "limits": {"timeout_s": 20, "memory_mb": 64},
            "state_dir": str(folder / "state"),
            "work_dir": str(folder / "work"),
            "poll_wait_s": 1,
        }
        config.update(overrides)
        path = folder / "config.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def follow_once(self, config: Path) -> int:
        return siteclient(["follow", "--once", "--config", str(config)])

    def spawn(self, config: Path, *args: str) -> subprocess.Popen[str]:
        """``siteclient follow`` as a real process (for kill -9 tests)."""
        log = (config.parent / "siteclient.log").open("a")
        return subprocess.Popen(
            [sys.executable, "-m", "siteclient.main", "follow", "--config", str(config), *args],
            stdout=log,
            stderr=log,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def post(
        self,
        image: str,
        config: dict[str, Any] | None = None,
        *,
        sites: tuple[str, ...] = ("site-a",),
        limits: Limits | None = None,
    ) -> str:
        return self.analyst().post(image, config or {}, list(sites), limits=limits)

    def stop(self) -> None:
        if self.registry is not None:
            self.registry.stop()
