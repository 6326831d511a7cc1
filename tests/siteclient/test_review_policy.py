"""The site's review rule (``require_review``), table-tested on verified views; then the executor
with it, on a fake runtime: refused before anything is pulled, or when the pull yields another
digest, each with the rule named."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from api.client.registry import Client
from ledger.bodies import (
    Decision,
    EventId,
    Member,
    MemberAction,
    Result,
    Review,
    Submission,
    Task,
)
from ledger.reference import parse_reference
from ledger.trust import Trusted, TrustedLog
from ledger.view import View
from siteclient.config import SiteConfig
from siteclient.errors import DigestMismatchError
from siteclient.policy.review import decide_review
from siteclient.run.agent import Job
from siteclient.run.execute import TaskExecutor
from siteclient.runtime.spec import PulledImage
from tests.ledger.factory import World
from tests.siteclient.test_execute import DIGEST, IMAGE_ID, SITE_LIMITS, FakeBlobs, FakeRuntime
from tests.siteclient.test_planner import publish

SITE = "site-a"
PINNED = f"myconsortium/avg:1@{DIGEST}"


class Consortium:
    """A review world, verified as a site verifies it, with one submission of ``PINNED``."""

    def __init__(self) -> None:
        self.world = World(reviewers=True)
        self.world.push(self.world.sign("admin", self.world.genesis_body()))
        self.log = TrustedLog(Trusted())
        body = Submission(
            image=PINNED,
            name="Average",
            version="1",
            description="",
            source="https://git.example/avg",
        )
        self.submission = self.post("alice", body)

    def post(self, author: str, body: object) -> EventId:
        return self.world.push(self.world.sign(author, body)).event.event.id  # type: ignore[arg-type]

    def review(self, reviewer: str, decision: Decision = Decision.APPROVE) -> None:
        self.post(reviewer, Review(submission=self.submission, decision=decision, note="n"))

    def approve(self) -> None:
        self.review("rob")
        self.review("ruth")

    def task(self, image: str = PINNED) -> EventId:
        return self.post("alice", Task(image=image, sites=(SITE,), config={}))

    def view(self) -> View:
        return publish(self.log, self.world)


Scenario = Callable[[Consortium], tuple[EventId, str]]


def _approved(c: Consortium) -> tuple[EventId, str]:
    c.approve()
    return c.task(), PINNED


def _unapproved(c: Consortium) -> tuple[EventId, str]:
    c.review("rob")
    return c.task(), PINNED


def _same_org_twice(c: Consortium) -> tuple[EventId, str]:
    c.review("ruth")
    c.review("rick")
    return c.task(), PINNED


def _never_submitted(c: Consortium) -> tuple[EventId, str]:
    other = "myconsortium/avg:2@sha256:" + "9" * 64
    return c.task(other), other


def _tag_without_digest(c: Consortium) -> tuple[EventId, str]:
    c.approve()
    return c.task("myconsortium/avg:1"), "myconsortium/avg:1"


def _revoked_before_post(c: Consortium) -> tuple[EventId, str]:
    c.approve()
    c.review("ray", Decision.REVOKE)
    return c.task(), PINNED


def _revoked_between_post_and_run(c: Consortium) -> tuple[EventId, str]:
    c.approve()
    task = c.task()
    c.review("ray", Decision.REVOKE)
    return task, PINNED


def _rejected(c: Consortium) -> tuple[EventId, str]:
    c.review("ruth", Decision.REJECT)
    return c.task(), PINNED


def _approved_only_after_post(c: Consortium) -> tuple[EventId, str]:
    c.review("rob")
    task = c.task()
    c.review("ruth")
    return task, PINNED


def _approver_revoked_later(c: Consortium) -> tuple[EventId, str]:
    c.approve()
    c.post(
        "admin",
        Member(
            action=MemberAction.REVOKE,
            name="rob",
            role=c.world.roles["rob"],
            public_key=c.world.keys["rob"].public.b64(),
        ),
    )
    return c.task(), PINNED


SCENARIOS: dict[str, tuple[Scenario, str | None]] = {
    "approved_digest_runs": (_approved, None),
    "unapproved_digest_refused": (_unapproved, "is not approved (1 of 2 approvals, 1 of 2 orga"),
    "same_org_approvals_count_once": (_same_org_twice, "(2 of 2 approvals, 1 of 2 organizations)"),
    "never_submitted_refused": (_never_submitted, "was never submitted for review"),
    "tag_without_digest_refused": (_tag_without_digest, "is not pinned by digest"),
    "revoked_before_post_refused": (_revoked_before_post, "before the task's entry"),
    "revoked_between_post_and_run_refused": (
        _revoked_between_post_and_run,
        "revoked at entry 5 by 'ray', after the task's entry 4",
    ),
    "rejected_refused": (_rejected, "was rejected at entry"),
    "approved_only_after_post_refused": (_approved_only_after_post, "post the task again"),
    "approver_revoked_later_still_runs": (_approver_revoked_later, None),
}


@pytest.mark.parametrize(("scenario", "refusal"), SCENARIOS.values(), ids=SCENARIOS.keys())
def test_review_decision(scenario: Scenario, refusal: str | None) -> None:
    consortium = Consortium()
    task, image = scenario(consortium)
    decision = decide_review(consortium.view(), task, parse_reference(image), site=SITE)
    assert decision.allowed is (refusal is None), decision.reason
    if refusal is not None:
        assert decision.reason.startswith("review: ")
        assert refusal in decision.reason
        assert "site 'site-a'" in decision.reason


def test_incremental_views_agree_with_a_view_of_the_whole_state() -> None:
    consortium = Consortium()
    consortium.view()
    consortium.review("rob")
    consortium.view()
    consortium.review("ruth")
    consortium.task()
    advanced = consortium.view()
    whole = TrustedLog(Trusted())
    fresh = publish(whole, consortium.world)
    assert advanced.reviews == fresh.reviews
    assert advanced.standing(DIGEST).approved and advanced.policy == fresh.policy


# ---- the executor with require_review


def _executor(
    tmp_path: Path,
    consortium: Consortium,
    runtime: FakeRuntime,
    views: list[View] | None = None,
) -> tuple[TaskExecutor, View]:
    config = SiteConfig.from_dict(
        {
            "site": SITE,
            "key_file": "keys/site-a.key",
            "registry": "https://registry.example.org",
            "log_key": None,
            "genesis": None,
            "sparql_endpoint": "http://sparql.site-a.internal:7878/query",
            "allowed_images": [r"myconsortium/[a-z0-9._-]+:[\w.-]+(@sha256:[0-9a-f]{64})?"],
            "limits": SITE_LIMITS,
            "state_dir": "state",
            "work_dir": "work",
            "require_review": True,
        },
        base_dir=tmp_path,
    )
    views = [] if views is None else views  # the site's published views, newest last
    executor = TaskExecutor(
        config,
        client=cast(Client, FakeBlobs()),
        runtime=runtime,
        allowlist=config.allowlist(),
        key=consortium.world.keys[SITE],
        view=lambda: views[-1],
    )
    views.append(consortium.view())
    return executor, views[-1]


def _run(executor: TaskExecutor, view: View, task: EventId, tmp_path: Path) -> Result:
    entry = next(e for e in view.fresh if e.event.event.id == task)
    folder = tmp_path / "work" / task
    folder.mkdir(parents=True)
    return executor(Job(entry=entry, cancel=threading.Event()), folder, lambda s, r: None)


def test_executor_runs_an_approved_digest(tmp_path: Path) -> None:
    consortium = Consortium()
    consortium.approve()
    task = consortium.task()
    runtime = FakeRuntime()
    executor, view = _executor(tmp_path, consortium, runtime)
    result = _run(executor, view, task, tmp_path)
    assert result.state.value == "completed"
    assert [spec.image_id for spec in runtime.runs] == [IMAGE_ID]


def test_executor_refuses_an_unapproved_digest_before_pulling(tmp_path: Path) -> None:
    consortium = Consortium()
    consortium.review("rob")
    task = consortium.task()
    runtime = FakeRuntime()
    executor, view = _executor(tmp_path, consortium, runtime)
    result = _run(executor, view, task, tmp_path)
    assert result.state.value == "rejected"
    assert (result.reason or "").startswith("review: digest")
    assert runtime.pulls == []


def test_executor_names_the_review_rule_when_the_pull_yields_another_digest(
    tmp_path: Path,
) -> None:
    consortium = Consortium()
    consortium.approve()
    task = consortium.task()
    liar = FakeRuntime(pull_error=DigestMismatchError("the engine pulled sha256:" + "6" * 64))
    executor, view = _executor(tmp_path, consortium, liar)
    result = _run(executor, view, task, tmp_path)
    assert result.state.value == "rejected"
    assert (result.reason or "").startswith(
        f"review: the pull did not yield the approved digest {DIGEST}"
    )
    assert liar.runs == []


class RevokedWhilePulling(FakeRuntime):
    """A pull during which a reviewer revokes the digest and the follower publishes that."""

    def __init__(self, consortium: Consortium, views: list[View]) -> None:
        super().__init__()
        self._consortium, self._views = consortium, views

    def pull(self, repository: str, *, tag: str | None, digest: str | None) -> PulledImage:
        self._consortium.review("ray", Decision.REVOKE)
        self._views.append(self._consortium.view())
        return super().pull(repository, tag=tag, digest=digest)


def test_executor_refuses_a_digest_revoked_while_it_was_pulled(tmp_path: Path) -> None:
    consortium = Consortium()
    consortium.approve()
    task = consortium.task()
    views: list[View] = []
    runtime = RevokedWhilePulling(consortium, views)
    executor, view = _executor(tmp_path, consortium, runtime, views)
    result = _run(executor, view, task, tmp_path)
    assert result.state.value == "rejected" and result.image_digest == DIGEST
    assert (result.reason or "").startswith("review:") and "revoked" in (result.reason or "")
    assert runtime.pulls and runtime.runs == []  # pulled, never run
