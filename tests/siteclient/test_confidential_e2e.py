"""Confidential results end to end (issue 6): three sites send encrypted partial results to a
Trusted Third Party's FileService, a TTP task aggregates them, the researcher gets only the
aggregate, and the registry's data directory holds no plaintext of any partial result.
Real registry, real FileService and site-client processes, real containers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.client.analyst import Analyst, Run
from api.errors import AnalysisError, ApiError
from crypto.age import AgeIdentity, save_identity
from ledger.bodies import Member, MemberAction, Role, Transfer
from ledger.events import SignedEvent, new_event
from tests.api.registry_process import _read_line
from tests.ledger.factory import World, key
from tests.siteclient.conftest import ImageFactory
from tests.siteclient.site_env import ROOT, SiteEnv

SECRET = "PARTIAL-SECRET-31337"
DATA_SITES = ("site-a", "site-b", "site-c")


@pytest.fixture
def env(tmp_path: Path, docker_client: object) -> Iterator[SiteEnv]:
    world = World()
    world.keys["ttp"] = key("ttp")
    world.roles["ttp"] = Role.SITE
    site = SiteEnv(tmp_path, world=world).start()
    yield site
    site.stop()


def _rekey(env: SiteEnv, name: str, identity: AgeIdentity, file_service: str | None = None) -> None:
    world = env.world
    body = Member(
        action=MemberAction.REKEY,
        name=name,
        role=world.roles[name],
        public_key=world.keys[name].public.b64(),
        encryption_key=identity.recipient.to_string(),
        file_service=file_service,
    )
    client = env.client(name)
    origin = client.entry(0).event.event.ledger
    event = new_event(body, ledger=origin, author=world.keys[name].key_id)
    client.post_event(SignedEvent.sign(event, world.keys[name]))


def _serve_files(env: SiteEnv, config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "siteclient.main", "serve-files", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=(config.parent / "serve-files.log").open("a"),
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = _read_line(proc, 30)
    assert line.startswith("listening on "), (config.parent / "serve-files.log").read_text()
    return proc, line.removeprefix("listening on ").strip()


def _transfers(env: SiteEnv, task: str) -> list[Transfer]:
    entries = env.client().entries(0, 1000).entries
    bodies = [e.event.event.body for e in entries]
    return [b for b in bodies if isinstance(b, Transfer) and b.task == task]


def _all_bytes(folder: Path) -> Iterator[tuple[Path, bytes]]:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path, path.read_bytes()


def test_ttp_aggregates_encrypted_partials_and_the_registry_sees_no_plaintext(
    env: SiteEnv, images: ImageFactory
) -> None:
    alice, ttp = AgeIdentity.generate(), AgeIdentity.generate()
    save_identity(env.tmp / "keys" / "ttp.age", ttp)
    partial = images.script("partial", f'echo "{SECRET}-$PHT_SITE" > /pht/output/partial.txt')
    aggregate = images.script(
        "aggregate",
        "cd /pht/input/files && ls > /pht/output/aggregate.txt && "
        f"echo AGGREGATE-COUNT=$(cat * | grep -c {SECRET}) >> /pht/output/aggregate.txt",
    )
    ttp_config = env.write_config(
        "ttp",
        identity_file=str(env.tmp / "keys" / "ttp.age"),
        file_service={"host": "127.0.0.1", "port": 0, "inbox_dir": str(env.tmp / "ttp-inbox")},
    )
    service, url = _serve_files(env, ttp_config)
    try:
        _rekey(env, "alice", alice)
        _rekey(env, "ttp", ttp, file_service=url)
        analyst = Analyst(env.client(), env.world.keys["alice"], identity=alice)
        first = analyst.post(partial.reference, {}, list(DATA_SITES), recipient="ttp", deliver=True)
        for site in DATA_SITES:
            assert env.follow_once(env.write_config(site)) == 0
        run = Run(
            task_id=first, results=analyst.results(analyst.wait(first, timeout=60)), analyst=analyst
        )
        assert set(run.states().values()) == {"completed"}, run.results
        for result in run.results.values():
            assert [o.delivered_to for o in result.result.outputs] == ["ttp"]
        deadline = time.monotonic() + 30
        while len(_transfers(env, first)) < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
        transfers = _transfers(env, first)
        assert sorted(t.sender for t in transfers) == sorted(DATA_SITES)
        assert {t.recipient for t in transfers} == {"ttp"}

        second = analyst.post(aggregate.reference, {}, ["ttp"], inputs=(first,))
        # The TTP runs under the umask its hardened unit sets (examples/deploy): what the
        # container must read (its input folder) still gets a mode it can read.
        restrictive = os.umask(0o077)
        try:
            assert env.follow_once(ttp_config) == 0
        finally:
            os.umask(restrictive)
        view = analyst.wait(second, timeout=60)
        final = Run(task_id=second, results=analyst.results(view), analyst=analyst)
        assert final.states() == {"ttp": "completed"}, final.results["ttp"].result.reason
        text = final.output("ttp", "aggregate.txt").decode()
        assert "AGGREGATE-COUNT=3" in text
        assert SECRET not in text  # the researcher gets only the aggregate
        for site in DATA_SITES:
            assert f"{site}-partial.txt" in text
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
    assert env.registry is not None
    for path, data in _all_bytes(env.registry.data):
        assert SECRET.encode() not in data, f"plaintext partial result in {path}"
        assert b"AGGREGATE-COUNT" not in data, f"plaintext aggregate in {path}"


def _encrypted_run(env: SiteEnv, images: ImageFactory, identity: AgeIdentity) -> tuple[str, Run]:
    _rekey(env, "alice", identity)
    image = images.script("secret", "echo TOP-SECRET-RESULT > /pht/output/out.txt")
    analyst = Analyst(env.client(), env.world.keys["alice"], identity=identity)
    task = analyst.post(image.reference, {}, ["site-a"])
    assert env.follow_once(env.write_config()) == 0
    view = analyst.wait(task, timeout=60)
    return task, Run(task_id=task, results=analyst.results(view), analyst=analyst)


def test_decryption_with_the_wrong_key_is_a_clear_error(env: SiteEnv, images: ImageFactory) -> None:
    _, run = _encrypted_run(env, images, AgeIdentity.generate())
    assert run.output("site-a", "out.txt") == b"TOP-SECRET-RESULT\n"
    stranger = Analyst(env.client(), env.world.keys["alice"], identity=AgeIdentity.generate())
    wrong = Run(task_id=run.task_id, results=run.results, analyst=stranger)
    with pytest.raises(AnalysisError, match="cannot be decrypted"):
        wrong.output("site-a", "out.txt")
    nobody = Analyst(env.client(), env.world.keys["alice"])
    with pytest.raises(AnalysisError, match="encrypted"):
        Run(task_id=run.task_id, results=run.results, analyst=nobody).output("site-a", "out.txt")
    assert env.registry is not None
    for path, data in _all_bytes(env.registry.data):
        assert b"TOP-SECRET-RESULT" not in data, f"plaintext result in {path}"


def test_ciphertext_moved_from_one_task_to_another_is_detected(
    env: SiteEnv, images: ImageFactory
) -> None:
    identity = AgeIdentity.generate()
    _, first = _encrypted_run(env, images, identity)
    _, second = _encrypted_run(env, images, identity)
    a = first.results["site-a"].result.outputs[0].sha256
    b = second.results["site-a"].result.outputs[0].sha256
    assert a != b
    # The registry's operator swaps the stored ciphertext of the second task for the first's.
    assert env.registry is not None
    objects = env.registry.data / "objects"
    target = objects / b[:2] / b[2:]
    target.chmod(0o644)
    target.write_bytes((objects / a[:2] / a[2:]).read_bytes())
    # The registry checks every blob against its name before serving it (store-damaged); a
    # registry that skipped that check would still be caught by the client's own hash check.
    with pytest.raises(ApiError, match=rf"store-damaged: blob {b}|sha256|hash|digest"):
        second.output("site-a", "out.txt")
