"""A real registry process plus one configured site, for end-to-end tests of the site client.

With ``store`` (a PostgreSQL DSN) the registry is two replicas sharing that ledger: researchers
post through the first (``url``), which integrates, and the site follows the second
(``site_url``), so every task reaches the site across replicas."""

from __future__ import annotations

import json
import os
import shutil
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
    store: str | None = None
    replica: RegistryProcess | None = None  # with a store: the replica the site follows

    def start(self) -> SiteEnv:
        data = init_registry(self.tmp, self.world, store=self.store)
        self.registry = RegistryProcess(data, store=self.store)
        self.registry.start()
        if self.store is not None:
            own = self.tmp / "replica" / "data"
            own.mkdir(parents=True)
            shutil.copy2(data / "log.key", own / "log.key")
            self.replica = RegistryProcess(own, store=self.store)
            self.replica.start()
        return self

    @property
    def url(self) -> str:
        assert self.registry is not None
        return self.registry.url

    @property
    def site_url(self) -> str:
        return self.replica.url if self.replica is not None else self.url

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
            "registry": self.site_url,
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
        for process in (self.replica, self.registry):
            if process is not None:
                process.stop()
