"""``siteclient follow`` from an operator's chair: who it refuses to be, how it stops, how it
takes a new allowlist, what it says about a wrong registry URL. Real registry processes, real
Docker, the site client as a real process where signals are involved."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.client.registry import Client
from ledger.bodies import Member, MemberAction
from ledger.events import SignedEvent, new_event
from ledger.kinds import Role
from siteclient.main import EXIT_REVOKED
from siteclient.main import main as siteclient
from tests.siteclient.conftest import ImageFactory
from tests.siteclient.site_env import SiteEnv

HELLO = "echo hi > /pht/output/hi.txt"


@pytest.fixture
def env(tmp_path: Path, docker_client: object) -> Iterator[SiteEnv]:
    site = SiteEnv(tmp_path).start()
    yield site
    site.stop()


def _log(config: Path) -> str:
    path = config.parent / "siteclient.log"
    return path.read_text() if path.exists() else ""


def _until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _caught_up(env: SiteEnv, config: Path) -> Callable[[], bool]:
    trusted = config.parent / "state" / "trusted.json"

    def check() -> bool:  # read-only: TrustStore.load() would reset a leaves file being written
        try:
            return bool(json.loads(trusted.read_text())["size"] == env.client().health())
        except (OSError, ValueError):
            return False

    return check


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _revoke(env: SiteEnv, site: str) -> int:
    admin = env.world.keys["admin"]
    body = Member(
        action=MemberAction.REVOKE,
        name=site,
        role=Role.SITE,
        public_key=env.world.keys[site].public.b64(),
    )
    client = Client(env.url, admin)
    origin = env.analyst().origin
    event = new_event(body, ledger=origin, author=admin.key_id)
    return client.post_event(SignedEvent.sign(event, admin)).index


# ---- who the site is (finding 10)


def test_follow_refuses_site_name_not_in_consortium(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    config = env.write_config("site-z", key_file=str(env.tmp / "keys" / "site-a.key"))
    assert siteclient(["follow", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "'site-z' is not a member of this consortium" in err
    key_id = env.world.keys["site-a"].key_id
    assert f"key {key_id[:12]}… belongs to 'site-a'" in err
    assert "set \"site\": 'site-a' in the site config" in err


def test_follow_refuses_key_of_another_member(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    config = env.write_config("site-a", key_file=str(env.tmp / "keys" / "site-b.key"))
    assert siteclient(["follow", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    key_id = env.world.keys["site-b"].key_id
    assert f"key {key_id[:12]}… (key_file) belongs to 'site-b'" in err
    assert "point key_file at 'site-a''s key" in err


def test_follow_refuses_a_member_that_is_not_a_site(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    config = env.write_config("alice", key_file=str(env.tmp / "keys" / "alice.key"))
    assert siteclient(["follow", "--config", str(config)]) == 1
    assert "'alice' is a researcher, not a site of this consortium" in capsys.readouterr().err


# ---- revocation (finding 14)


def test_revoked_site_exits_5_naming_the_entry(env: SiteEnv) -> None:
    config = env.write_config(poll_wait_s=25)  # a long poll is pending when the revoke comes
    proc = env.spawn(config)
    try:
        _until("the site to catch up", _caught_up(env, config))
        index = _revoke(env, "site-a")
        assert proc.wait(60) == EXIT_REVOKED, _log(config)
    finally:
        _stop(proc)
    assert f"REVOKED, stopping: site 'site-a' was revoked at entry {index}" in _log(config)
    assert "retrying" not in _log(config)


def test_revoked_site_restarted_exits_5_again(env: SiteEnv) -> None:
    config = env.write_config(poll_wait_s=25)
    proc = env.spawn(config)
    try:
        _until("the site to catch up", _caught_up(env, config))
        index = _revoke(env, "site-a")
        assert proc.wait(60) == EXIT_REVOKED, _log(config)
    finally:
        _stop(proc)
    proc = env.spawn(config)  # systemd without RestartPreventExitStatus=5, say
    try:
        assert proc.wait(60) == EXIT_REVOKED, _log(config)
    finally:
        _stop(proc)
    assert _log(config).count(f"was revoked at entry {index}") == 2


def test_site_revoked_while_down_stops_instead_of_retrying(env: SiteEnv) -> None:
    config = env.write_config()
    assert env.follow_once(config) == 0
    _revoke(env, "site-a")  # the site never sees the entry: the registry refuses its reads
    proc = env.spawn(config)
    try:
        code = proc.wait(60)
    finally:
        _stop(proc)
    assert code == 1, _log(config)
    text = _log(config)
    assert "the registry refuses this site's key" in text
    assert "it was probably revoked since (ask the admin); stopping" in text
    assert "retrying" not in text


# ---- stopping and reloading (finding 15)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_follow_stops_within_2s_of_sigterm_during_long_poll(env: SiteEnv, signum: int) -> None:
    config = env.write_config(poll_wait_s=30)
    proc = env.spawn(config)
    try:
        _until("the site to catch up", _caught_up(env, config))
        _until("the long poll", lambda: "following" in _log(config))
        time.sleep(1.0)  # the 30 s long poll is now pending
        began = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(25)  # the old client waited for the long poll (up to 30 s here)
        took = time.monotonic() - began
    finally:
        _stop(proc)
    assert code == 0, _log(config)
    print(f"stopped {took:.2f} s after signal {signum} with a 30 s long poll pending")


def test_sighup_reloads_allowlist(env: SiteEnv, images: ImageFactory) -> None:
    image = images.script("hup", HELLO, tag="1")
    config = env.write_config(allowed_images=[r"nothing/matches:this"], poll_wait_s=25)
    proc = env.spawn(config)
    try:
        first = env.post(image.reference)
        view = env.analyst().wait(first, timeout=60)
        assert env.analyst().results(view)["site-a"].result.state.value == "rejected"

        data = json.loads(config.read_text())
        data["allowed_images"] = [r"127\.0\.0\.1:5000/pht-test/rt-hup:1(@sha256:[0-9a-f]{64})?"]
        data["limits"]["timeout_s"] = 30
        data["registry"] = "http://127.0.0.1:1"  # not reloadable: reported, ignored
        config.write_text(json.dumps(data))
        proc.send_signal(signal.SIGHUP)
        _until("the reload", lambda: "SIGHUP: limits.timeout_s: 20 -> 30" in _log(config))
        text = _log(config)
        assert "SIGHUP: allowed_images: ['nothing/matches:this'] -> [" in text
        assert "SIGHUP: changes to registry take effect only after a restart" in text

        config.write_text("{not json")  # a broken edit keeps the running config
        proc.send_signal(signal.SIGHUP)
        _until("the refusal", lambda: "keeping the running one" in _log(config))

        second = env.post(image.reference, {"n": 2})
        view = env.analyst().wait(second, timeout=60)
        result = env.analyst().results(view)["site-a"].result
        assert result.state.value == "completed", result.reason
        assert proc.poll() is None
    finally:
        _stop(proc)


# ---- a wrong registry URL (finding 16)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_first_start_with_nothing_at_the_registry_url_fails_naming_the_fix(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    config = env.write_config(registry=f"http://127.0.0.1:{_free_port()}")
    assert siteclient(["follow", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach the registry at http://127.0.0.1:" in err
    assert "is `pht serve` running there? check `registry` in the site config" in err


@pytest.mark.parametrize("where", ["path", "image-registry"])
def test_first_start_at_a_url_that_is_not_a_pht_registry_says_so(
    env: SiteEnv, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    url = env.url + "/api" if where == "path" else "http://127.0.0.1:5000"
    config = env.write_config(registry=url)
    assert siteclient(["follow", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"{url} answers but is not a PHT registry" in err
    assert "check `registry` in the site config" in err


def test_site_logs_reconnected_after_the_registry_comes_back(env: SiteEnv) -> None:
    config = env.write_config()
    proc = env.spawn(config)
    try:
        _until("the site to catch up", _caught_up(env, config))
        assert env.registry is not None
        env.registry.kill()
        _until("a retry", lambda: "retrying in" in _log(config))
        env.registry.start()
        _until("the reconnection", lambda: "reconnected to " in _log(config))
        assert proc.poll() is None
    finally:
        _stop(proc)


def test_follow_once_names_the_fix_for_a_wrong_registry_url_too(
    env: SiteEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    config = env.write_config(registry="http://127.0.0.1:5000")
    assert env.follow_once(config) == 1
    assert "http://127.0.0.1:5000 answers but is not a PHT registry" in capsys.readouterr().err
