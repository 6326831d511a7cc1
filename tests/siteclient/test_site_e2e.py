"""The site client end to end: a real registry process, the real Docker engine and image
registry, real containers. What a researcher sees is checked through the analyst client."""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.client.analyst import Analyst
from api.client.answers import TaskView
from api.client.registry import Client
from ledger.bodies import Cancel, EventId, Result
from ledger.events import SignedEvent, new_event
from siteclient.follow.state import TrustStore
from siteclient.main import EXIT_FORK
from tests.api.registry_process import RegistryProcess
from tests.postgres_db import fresh_schema
from tests.siteclient.conftest import ImageFactory
from tests.siteclient.site_env import SiteEnv

WRITE_OUTPUT = (
    'echo "{\\"site\\": \\"$PHT_SITE\\", \\"task\\": \\"$PHT_TASK\\"}" > /pht/output/hello.json; '
    "cat /pht/input/config.json > /pht/output/config-seen.json; echo done"
)


@pytest.fixture(params=["embedded", "postgres-replicas"])
def env(request: pytest.FixtureRequest, tmp_path: Path, docker_client: object) -> Iterator[SiteEnv]:
    """The registry on the embedded store, and as two replicas on PostgreSQL (site_env)."""
    if request.param == "embedded":
        site = SiteEnv(tmp_path).start()
        yield site
        site.stop()
        return
    with fresh_schema() as dsn:
        site = SiteEnv(tmp_path, store=dsn).start()
        yield site
        site.stop()


@pytest.fixture
def embedded_env(tmp_path: Path, docker_client: object) -> Iterator[SiteEnv]:
    """For a test that copies the registry's data directory (entries held there)."""
    site = SiteEnv(tmp_path).start()
    yield site
    site.stop()


def _result(env: SiteEnv, task: str, site: str = "site-a") -> tuple[TaskView, Result]:
    analyst = env.analyst()
    view = analyst.wait(task, timeout=60)
    results = analyst.results(view)
    return view, results[site].result


def test_allowed_image_runs_and_result_is_verified(env: SiteEnv, images: ImageFactory) -> None:
    image = images.script("hello", WRITE_OUTPUT, tag="1")
    config = env.write_config()
    task = env.post(image.reference, {"lr": 0.5})
    assert env.follow_once(config) == 0
    analyst = env.analyst()
    view = analyst.wait(task, timeout=30)
    run = analyst.results(view)["site-a"]
    assert run.result.state.value == "completed", run.result.reason
    assert run.result.image_digest == image.digest
    outputs = {o.name: o for o in run.result.outputs}
    assert set(outputs) == {"hello.json", "config-seen.json"}
    hello = json.loads(analyst.client.get_blob(outputs["hello.json"].sha256))
    assert hello == {"site": "site-a", "task": task}
    assert json.loads(analyst.client.get_blob(outputs["config-seen.json"].sha256)) == {"lr": 0.5}
    assert run.result.log is not None
    assert b"done" in analyst.client.get_blob(run.result.log.sha256)
    # progress was announced: accepted then started, before the result
    kinds = [
        (e.event.event.kind.value, getattr(e.event.event.body, "state", None))
        for e in env.client().entries(0, 100).entries
        if e.index > view.task.index
    ]
    assert [k for k in kinds if k[0] == "status"] == [("status", "accepted"), ("status", "started")]


def test_image_outside_allowlist_is_refused_with_a_signed_reason(
    env: SiteEnv, images: ImageFactory
) -> None:
    config = env.write_config(allowed_images=[r"myconsortium/.*:.*"])
    task = env.post("127.0.0.1:5000/pht-test/rt-hello:1")
    assert env.follow_once(config) == 0
    _, result = _result(env, task)
    assert result.state.value == "rejected"
    assert "matches no allowed pattern" in (result.reason or "")
    assert result.image_digest is None  # nothing was pulled


def test_always_pull_runs_a_re_pushed_tag(env: SiteEnv, images: ImageFactory) -> None:
    config = env.write_config()
    images.script("repush", "echo v1 > /pht/output/version.txt", tag="stable")
    first = env.post("127.0.0.1:5000/pht-test/rt-repush:stable")
    assert env.follow_once(config) == 0
    images.script("repush", "echo v2 > /pht/output/version.txt", tag="stable")
    second = env.post("127.0.0.1:5000/pht-test/rt-repush:stable")
    assert env.follow_once(config) == 0
    client = env.client()
    seen = []
    for task in (first, second):
        _, result = _result(env, task)
        seen.append(client.get_blob(result.outputs[0].sha256).strip())
    assert seen == [b"v1", b"v2"]


def test_timeout_is_reported_and_site_stays_healthy(env: SiteEnv, images: ImageFactory) -> None:
    image = images.script("sleeper", "sleep 600", tag="1")
    config = env.write_config(limits={"timeout_s": 2, "memory_mb": 64})
    task = env.post(image.reference)
    assert env.follow_once(config) == 0
    _, result = _result(env, task)
    assert result.state.value == "timeout"
    follow_up = env.post(images.script("hello", WRITE_OUTPUT, tag="1").reference)
    assert env.follow_once(config) == 0
    assert _result(env, follow_up)[1].state.value == "completed"


def _one_result_per_site(env: SiteEnv) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    client = env.client()
    entries = client.entries(0, 1000).entries
    for entry in entries:
        body = entry.event.event.body
        if isinstance(body, Result):
            key = (body.task, entry.event.event.author)
            counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before_run", "during_run", "after_run"])
def test_siteclient_killed_then_restarted_runs_each_task_once(
    env: SiteEnv, images: ImageFactory, moment: str
) -> None:
    image = images.script("slow", "sleep 2; echo ok > /pht/output/ok.txt", tag="1")
    config = env.write_config()
    task = env.post(image.reference)
    proc = env.spawn(config)
    delay = {"before_run": 0.3, "during_run": 2.0, "after_run": 6.0}[moment]
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert env.follow_once(config) == 0
    _, result = _result(env, task)
    assert result.state.value == "completed"
    counts = _one_result_per_site(env)
    assert list(counts.values()) == [1], counts
    assert TrustStore(config.parent / "state").load().size == env.client().health()


def test_registry_restart_mid_follow_is_survived(env: SiteEnv, images: ImageFactory) -> None:
    image = images.script("hello", WRITE_OUTPUT, tag="1")
    config = env.write_config()
    proc = env.spawn(config)
    try:
        first = env.post(image.reference)
        _result(env, first)
        assert env.registry is not None
        env.registry.kill()
        env.registry.start()
        second = env.post(image.reference)
        _, result = _result(env, second)
        assert result.state.value == "completed"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert sorted(_one_result_per_site(env).values()) == [1, 1]


def test_forked_history_is_detected_and_the_site_stops_with_evidence(
    embedded_env: SiteEnv, images: ImageFactory
) -> None:
    env = embedded_env
    assert env.registry is not None
    image = images.script("hello", WRITE_OUTPUT, tag="1")
    # A second registry with the same genesis and the same log key, started from a copy of the
    # data directory before anything else was appended: a rewritten history, signed correctly.
    env.registry.stop()
    fork_data = env.tmp / "fork-data"
    shutil.copytree(env.registry.data, fork_data)
    env.registry.start()
    config = env.write_config()
    env.post(image.reference)
    assert env.follow_once(config) == 0
    trusted_before = TrustStore(config.parent / "state").load()

    env.registry.stop()
    fork = RegistryProcess(fork_data)
    fork.start()
    try:
        forked_client = Client(fork.url, env.world.keys["alice"])
        analyst = Analyst(forked_client, env.world.keys["alice"])
        for n in range(6):
            analyst.post(image.reference, {"fork": n}, ["site-b"])
        config = env.write_config(registry=fork.url)
        assert env.follow_once(config) == EXIT_FORK
    finally:
        fork.stop()
    evidence = list((config.parent / "state" / "evidence").glob("*/*-checkpoint.txt"))
    assert len(evidence) == 2
    assert trusted_before.checkpoint in {p.read_bytes() for p in evidence}
    # the trusted state did not move onto the fork
    assert TrustStore(config.parent / "state").load().size == trusted_before.size


def _wait_for_state(env: SiteEnv, task: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if env.client().task(task).sites["site-a"].state == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"task never reached {state!r}")


def test_cancel_kills_the_running_container(env: SiteEnv, images: ImageFactory) -> None:
    image = images.script("sleeper", "sleep 600", tag="1")
    config = env.write_config()
    proc = env.spawn(config)
    try:
        task = env.post(image.reference)
        _wait_for_state(env, task, "started")
        analyst = env.analyst()
        cancel = Cancel(task=EventId(task), reason="changed my mind")
        event = new_event(cancel, ledger=analyst.origin, author=env.world.keys["alice"].key_id)
        analyst.client.post_event(SignedEvent.sign(event, env.world.keys["alice"]))
        _, result = _result(env, task)
        assert result.state.value == "cancelled"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_parallelism_runs_tasks_side_by_side(env: SiteEnv, images: ImageFactory) -> None:
    image = images.script("nap", "sleep 2; echo ok > /pht/output/ok.txt", tag="1")
    config = env.write_config(parallelism=2)
    tasks = [env.post(image.reference, {"n": n}) for n in range(2)]
    assert env.follow_once(config) == 0
    first, second = (_result(env, task)[1] for task in tasks)
    assert first.started and first.finished and second.started and second.finished
    assert first.started < second.finished and second.started < first.finished  # overlapped
