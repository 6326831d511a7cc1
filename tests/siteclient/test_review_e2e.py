"""Algorithm review at a real site: a registry process, the real Docker engine and image registry,
reviews posted as signed events, and a site with ``require_review`` deciding from its own
verified replay. Then the auditor: approvals and unreviewed runs in its report, and the same
review state in the registry, every site and the auditor (one replay, one set of rules)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from api.client.analyst import Analyst
from api.client.registry import Client
from cli.main import main as pht
from crypto import SigningKey
from ledger.bodies import Decision, Member, MemberAction, Result
from ledger.events import SignedEvent, new_event
from ledger.store.ledger import Ledger
from ledger.store.snapshot import read_snapshot
from ledger.verify import verify_ledger
from siteclient.config import SiteConfig
from siteclient.follow.follower import Follower
from siteclient.follow.state import TrustStore
from siteclient.main import main as siteclient
from siteclient.run.agent import Agent
from siteclient.run.execute import TaskExecutor
from siteclient.runtime.docker import DockerRuntime
from tests.ledger.factory import World
from tests.siteclient.conftest import BuiltImage, ImageFactory
from tests.siteclient.site_env import SiteEnv

HELLO = "echo reviewed > /pht/output/hello.txt"


@pytest.fixture
def env(tmp_path: Path, docker_client: object) -> Iterator[SiteEnv]:
    site = SiteEnv(tmp_path, world=World(reviewers=True)).start()
    yield site
    site.stop()


def analyst(env: SiteEnv, member: str) -> Analyst:
    key = env.world.keys[member]
    return Analyst(Client(env.url, key), key)


def pinned(image: BuiltImage) -> str:
    return f"{image.reference}@{image.digest}"


def submit(env: SiteEnv, image: BuiltImage) -> str:
    return analyst(env, "alice").submit(
        pinned(image),
        name="Hello",
        version=image.tag,
        description="writes a greeting",
        source="https://git.example/hello",
    )


def review(env: SiteEnv, submission: str, *reviewers: str, decision: str = "approve") -> None:
    for reviewer in reviewers:
        analyst(env, reviewer).review(submission, Decision(decision), f"{reviewer} read it")


def result(env: SiteEnv, task: str, site: str = "site-a") -> Result:
    who = analyst(env, "alice")
    return who.results(who.wait(task, timeout=60))[site].result


def test_approved_digest_runs_at_a_site_that_requires_review(
    env: SiteEnv, images: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    image = images.script("reviewed", HELLO, tag="1")
    review(env, submit(env, image), "rob", "ruth")
    task = env.post(pinned(image))
    config = env.write_config(require_review=True)
    assert env.follow_once(config) == 0
    done = result(env, task)
    assert done.state.value == "completed", done.reason
    assert done.image_digest == image.digest
    # check-image says the same, from the site's verified view
    capsys.readouterr()
    assert siteclient(["check-image", pinned(image), "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("allowed: ")
    assert out[1].startswith("review (required here, as of entry ")
    assert out[1].endswith(
        f"digest {image.digest} is approved (2 of 2 approvals, 2 of 2 organizations)"
    )
    assert out[3:] == [
        f"  approved at entry {n} by {who} ({org})"
        for n, who, org in ((2, "rob", "org-b"), (3, "ruth", "org-c"))
    ]
    assert siteclient(["check-image", image.reference, "--config", str(config)]) == 1
    assert "never passes review" in capsys.readouterr().out


def _unapproved(env: SiteEnv, image: BuiltImage) -> str:
    review(env, submit(env, image), "rob")
    return env.post(pinned(image))


def _revoked(env: SiteEnv, image: BuiltImage) -> str:
    submission = submit(env, image)
    review(env, submission, "rob", "ruth")
    review(env, submission, "ray", decision="revoke")
    return env.post(pinned(image))


def _tag_without_digest(env: SiteEnv, image: BuiltImage) -> str:
    review(env, submit(env, image), "rob", "ruth")
    return env.post(image.reference)


def _revoked_between_post_and_run(env: SiteEnv, image: BuiltImage) -> str:
    submission = submit(env, image)
    review(env, submission, "rob", "ruth")
    task = env.post(pinned(image))
    review(env, submission, "ray", decision="revoke")
    return task


REFUSALS = {
    "test_site_refuses_an_unapproved_digest": (
        _unapproved,
        "is not approved (1 of 2 approvals, 1 of 2 organizations)",
    ),
    "test_site_refuses_a_revoked_digest": (_revoked, "before the task's entry"),
    "test_site_refuses_a_tag_without_digest": (_tag_without_digest, "is not pinned by digest"),
    "test_site_refuses_a_digest_revoked_between_post_and_run": (
        _revoked_between_post_and_run,
        "after the task's entry",
    ),
}


@pytest.mark.parametrize(("scenario", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
def test_site_with_require_review_refuses_with_the_rule_named(
    env: SiteEnv, images: ImageFactory, scenario: Any, reason: str
) -> None:
    image = images.script("reviewed", HELLO, tag="1")
    task = scenario(env, image)
    config = env.write_config(require_review=True)
    assert env.follow_once(config) == 0
    refused = result(env, task)
    assert refused.state.value == "rejected"
    assert (refused.reason or "").startswith("review: "), refused.reason
    assert reason in (refused.reason or "")
    assert refused.image_digest is None  # nothing was pulled


class _LyingApi:
    """The engine's API, except that every pull reports another digest than the one asked."""

    def __init__(self, real: docker.APIClient, digest: str) -> None:
        self._real = real
        self._digest = digest

    def pull(self, repository: str, **_: object) -> list[dict[str, str]]:
        return [{"status": "Pulling from x"}, {"status": f"Digest: {self._digest}"}]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _LyingClient:
    def __init__(self, real: docker.DockerClient, digest: str) -> None:
        self.api = _LyingApi(real.api, digest)
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_site_refuses_an_approved_digest_whose_pull_yields_another(
    env: SiteEnv, images: ImageFactory, docker_client: docker.DockerClient
) -> None:
    image = images.script("reviewed", HELLO, tag="1")
    other = images.script("impostor", "echo impostor", tag="1")
    review(env, submit(env, image), "rob", "ruth")
    task = env.post(pinned(image))
    # The real site, wired as `siteclient follow` wires it, on an engine that pulls the impostor.
    config = SiteConfig.load(env.write_config(require_review=True))
    key = SigningKey.load(config.key_file)
    store = TrustStore(config.state_dir, exclusive=True)
    client = Client(config.registry, key)
    follower = Follower(client, store, log_key=None, genesis=None)
    runtime = DockerRuntime(_LyingClient(docker_client, other.digest))  # type: ignore[arg-type]
    executor = TaskExecutor(
        config,
        client=client,
        runtime=runtime,
        allowlist=config.allowlist(),
        key=key,
        view=lambda: follower.view,
    )
    agent = Agent(
        site=config.site,
        key=key,
        client=client,
        follower=follower,
        execute=executor,
        work_dir=config.work_dir,
    )
    try:
        agent.step(0)
        agent.drain()
        agent.step(0)
    finally:
        agent.close()
        client.close()
        store.close()
    refused = result(env, task)
    assert refused.state.value == "rejected"
    assert (refused.reason or "").startswith(
        f"review: the pull did not yield the approved digest {image.digest}"
    )
    assert other.digest in (refused.reason or "")


def test_audit_shows_approvals_and_unreviewed_runs_and_every_replay_agrees(
    env: SiteEnv, images: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    approved = images.script("reviewed", HELLO, tag="1")
    unapproved = images.script("unreviewed", HELLO + "; echo unreviewed", tag="1")
    first = submit(env, approved)
    review(env, first, "rob", "ruth")
    second = submit(env, unapproved)
    review(env, second, "rick")
    both = ("site-a", "site-b")
    good = analyst(env, "alice").post(pinned(approved), {}, list(both))
    risky = analyst(env, "alice").post(pinned(unapproved), {}, list(both))
    # rob leaves the consortium later: his approval stands, and the audit shows both
    leave = Member(
        action=MemberAction.REVOKE,
        name="rob",
        role=env.world.roles["rob"],
        public_key=env.world.keys["rob"].public.b64(),
    )
    admin = env.world.keys["admin"]
    event = new_event(leave, ledger=env.world.origin, author=admin.key_id)
    env.client("admin").post_event(SignedEvent.sign(event, admin))
    strict = env.write_config("site-a", require_review=True)
    lenient = env.write_config("site-b")
    for config in (strict, lenient, strict, lenient):
        assert env.follow_once(config) == 0
    assert result(env, good, "site-a").state.value == "completed"
    assert result(env, good, "site-b").state.value == "completed"
    assert result(env, risky, "site-a").state.value == "rejected"
    assert result(env, risky, "site-b").state.value == "completed"

    capsys.readouterr()
    key = str(env.tmp / "keys" / "audrey.key")
    audit = ["audit", "--registry", env.url, "--key", key, "--state", str(env.tmp / "aud")]
    assert pht([*audit, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["review_policy"] == {"approvals": 2, "organizations": 2}
    by_id = {s["submission"]: s for s in report["submissions"]}
    assert by_id[first]["state"] == "approved" and by_id[second]["state"] == "pending"
    reviewers = [(r["reviewer"], r["org"], r["decision"]) for r in by_id[first]["reviews"]]
    assert reviewers == [("rob", "org-b", "approve"), ("ruth", "org-c", "approve")]
    assert by_id[first]["reviews"][0]["reviewer_revoked"] is not None
    assert by_id[first]["reviews"][0]["note"] == "rob read it"
    runs = [(u["task"], u["site"], u["ran"]) for u in report["unreviewed_runs"]]
    assert runs == [(risky, "site-b", unapproved.digest)]
    assert pht(audit) == 0
    text = capsys.readouterr().out
    assert "APPROVED" in text and "[reviewer revoked at entry" in text
    assert f"{risky[:12]} entry" in text and "not approved as of the task's entry" in text

    # One replay, one set of rules: the registry, both sites and the auditor agree.
    records, _ = env.client().entry_records(0, 1000)
    auditor = verify_ledger(records, workers=2).state.to_dict()
    sites = [TrustStore(c.parent / "state").load().state.to_dict() for c in (strict, lenient)]
    assert env.registry is not None
    env.registry.stop()
    Ledger.open(env.registry.data, log_key=SigningKey.load(env.registry.data / "log.key")).close()
    snapshot = read_snapshot(env.registry.data)
    assert snapshot is not None
    registry = snapshot.state.to_dict()
    for state in (registry, *sites):
        assert state == auditor
    assert auditor["reviews"][approved.digest]["revoked"] is None
    approved_at_post = {
        t: auditor["tasks"][t].get("approved_at_post", False) for t in (good, risky)
    }
    assert approved_at_post == {good: True, risky: False}
