"""The site's heartbeat (:mod:`siteclient.follow.presence`): beats reach a real registry, a site
that stops beating turns offline, a hung health check never blocks a beat, and a real
``siteclient follow`` shows up online in ``pht site list``.

The registries here run with a short heartbeat interval (``pht serve --heartbeat-interval``), so
"offline after three missed heartbeats" takes about a second; the exact rule is tested with a fake
clock in ``tests/api/test_presence.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.client.answers import SiteRow
from api.client.registry import Client
from api.wire.heartbeat import Heartbeat
from cli.main import main as pht
from siteclient.follow.presence import CachedCheck, Heartbeats
from tests.api.conftest import FakeClock
from tests.api.registry_process import RegistryProcess, init_registry
from tests.siteclient.site_env import SiteEnv

INTERVAL = 0.3


def wait_until(what: Callable[[], bool], *, timeout: float = 30.0) -> bool:
    """Poll ``what`` until it holds (a generous bound; this is not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def env(tmp_path: Path) -> Iterator[SiteEnv]:
    site = SiteEnv(tmp_path)
    data = init_registry(tmp_path, site.world)
    site.registry = RegistryProcess(data, extra=("--heartbeat-interval", str(INTERVAL)))
    site.registry.start()
    time.sleep(1.0)  # requests signed in the registry's first second are refused by design
    yield site
    site.stop()


def row(env: SiteEnv, site: str) -> SiteRow:
    with Client(env.url, env.world.keys["alice"]) as alice:
        return next(r for r in alice.sites().sites if r.site == site)


def test_a_site_that_stops_beating_is_shown_offline(env: SiteEnv) -> None:
    with Client(env.url, env.world.keys["site-a"]) as client:
        size = client.health()
        beats = Heartbeats(
            site="site-a",
            send=client.heartbeat,
            verified_size=lambda: size,
            running=lambda: 0,
            docker=lambda: True,
            sparql=lambda: True,
            interval=INTERVAL,
        ).start()
        try:
            assert wait_until(lambda: row(env, "site-a").presence == "online")
            assert client.health() == size  # heartbeats are not ledger history
        finally:
            beats.stop()
        stopped = row(env, "site-a")
        assert wait_until(lambda: row(env, "site-a").presence == "offline")
        offline = row(env, "site-a")
    assert offline.last_seen == stopped.last_seen  # no heartbeat after stop()
    assert offline.verified_size == size and offline.docker is True
    assert row(env, "site-b").presence == "never"


def test_a_site_behind_the_ledger_that_does_not_advance_is_lagging(env: SiteEnv) -> None:
    with Client(env.url, env.world.keys["site-a"]) as client:
        size = client.health()
        beats = Heartbeats(
            site="site-a",
            send=client.heartbeat,
            verified_size=lambda: size - 1,  # never catches up
            running=lambda: 0,
            docker=lambda: True,
            sparql=lambda: True,
            interval=INTERVAL,
        ).start()
        try:
            assert wait_until(lambda: row(env, "site-a").presence == "lagging")
            assert row(env, "site-a").behind == 1
        finally:
            beats.stop()


def test_beats_have_strictly_growing_sent_at_even_on_a_stuck_clock() -> None:
    sent: list[Heartbeat] = []
    stuck = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    beats = Heartbeats(
        site="site-a",
        send=sent.append,
        verified_size=lambda: 3,
        running=lambda: 1,
        docker=lambda: False,
        sparql=lambda: True,
        now=lambda: stuck,
    )
    first, second = beats.beat(), beats.beat()
    assert second.sent_at > first.sent_at and sent == [first, second]
    assert (first.verified_size, first.running, first.docker, first.sparql) == (3, 1, False, True)


def test_a_hung_health_check_reports_false_without_blocking() -> None:
    release = threading.Event()
    calls: list[int] = []

    def hung() -> bool:
        calls.append(1)
        release.wait(30)
        return True

    clock = FakeClock(0.0)
    check = CachedCheck(hung, every=15.0, timeout=2.0, clock=clock)
    assert check.value() is False  # not answered yet
    clock.advance(3.0)
    assert check.value() is False and len(calls) == 1  # still hung: not started again
    release.set()
    assert wait_until(lambda: check.value() is True)
    clock.advance(1.0)
    assert check.value() is True and len(calls) == 1  # cached for `every` seconds
    clock.advance(15.0)
    assert check.value() is True and wait_until(lambda: len(calls) == 2)


def test_a_failing_health_check_is_false() -> None:
    def broken() -> bool:
        raise OSError("engine socket gone")

    assert wait_until(lambda: CachedCheck(broken).value() is False)


def test_siteclient_follow_shows_online_then_offline_in_pht_site_list(
    env: SiteEnv,
    docker_client: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PHT_PROFILE", str(tmp_path / "profile.json"))
    alice = ["--registry", env.url, "--key", str(env.tmp / "keys" / "alice.key")]

    def listed() -> dict[str, dict[str, object]]:
        capsys.readouterr()
        assert pht(["site", "list", "--json", *alice]) == 0
        return {r["site"]: r for r in json.loads(capsys.readouterr().out)["sites"]}

    proc = env.spawn(env.write_config(), "--heartbeat-interval", str(INTERVAL))
    try:
        # online from the first beat; behind 0 once the follower verified the ledger
        assert wait_until(lambda: listed()["site-a"]["presence"] == "online", timeout=60)
        assert wait_until(lambda: listed()["site-a"]["behind"] == 0)
        seen = listed()["site-a"]
        assert seen["docker"] is True and seen["sparql"] is False  # sparql.invalid never answers
        assert seen["version"] and seen["presence"] == "online"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert wait_until(lambda: listed()["site-a"]["presence"] == "offline")
    capsys.readouterr()
    assert pht(["site", "list", *alice]) == 0
    assert "offline since" in capsys.readouterr().out
