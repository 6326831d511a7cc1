"""The rules of algorithm review (DESIGN 11), table-driven and named for the attack; then how
approvals count, and that the review state survives snapshots and parallel replay."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ledger.bodies import (
    Decision,
    EventId,
    Member,
    MemberAction,
    Review,
    ReviewPolicy,
    Role,
    Submission,
    Task,
)
from ledger.errors import FormatError, LedgerError, RuleViolation
from ledger.events import Entry, SignedEvent
from ledger.rules import apply
from ledger.state import State
from ledger.verify import verify_ledger
from tests.ledger.factory import World

DIGEST = "sha256:" + "d1" * 32
OTHER = "sha256:" + "e2" * 32
IMAGE = f"myconsortium/avg@{DIGEST}"


def submission(image: str = IMAGE) -> Submission:
    return Submission(
        image=image,
        name="Average",
        version="1.0",
        description="the mean of a column",
        source="https://git.example/avg",
    )


def review(submission_id: str, decision: Decision = Decision.APPROVE) -> Review:
    return Review(submission=EventId(submission_id), decision=decision, note="looked at it")


def revoke_member(world: World, name: str) -> Member:
    return Member(
        action=MemberAction.REVOKE,
        name=name,
        role=world.roles[name],
        public_key=world.keys[name].public.b64(),
    )


def task(image: str = IMAGE) -> Task:
    return Task(image=image, sites=("site-a",), config={})


class Ledger:
    """A review world with its replayed state; ``post`` appends through the rules."""

    def __init__(self) -> None:
        self.world = World(reviewers=True)
        self.state = State()
        self.post("admin", self.world.genesis_body())
        self.submission = self.post("alice", submission()).event.event.id

    def post(self, author: str, body: object) -> Entry:
        entry = self.world.push(self.world.sign(author, body))  # type: ignore[arg-type]
        apply(self.state, entry)
        return entry

    def do(self, author: str, body: object) -> None:
        self.post(author, body)

    def attempt(self, author: str, body: object) -> None:
        """Apply an entry that the rules must refuse (the world does not keep it)."""
        entry = self.world.entry(self.world.sign(author, body))  # type: ignore[arg-type]
        apply(self.state, entry)

    def approved_at_post(self, image: str = IMAGE) -> bool:
        entry = self.post("alice", task(image))
        return self.state.tasks[entry.event.event.id].approved_at_post


Setup = Callable[[Ledger], None]
Attack = Callable[[Ledger], tuple[str, object]]


def _nothing(ledger: Ledger) -> None:
    return None


def _approved(ledger: Ledger) -> None:
    ledger.post("rob", review(ledger.submission))
    ledger.post("ruth", review(ledger.submission))


def _approved_then_revoked(ledger: Ledger) -> None:
    _approved(ledger)
    ledger.post("rick", review(ledger.submission, Decision.REVOKE))


ATTACKS: dict[str, tuple[Setup, Attack, str]] = {
    "test_rejects_self_review_by_the_submitter": (
        _nothing,
        lambda led: ("alice", review(led.submission)),
        "only a reviewer may post this",
    ),
    "test_rejects_review_by_the_submitters_organization": (
        _nothing,
        lambda led: ("rita", review(led.submission)),
        "both are of organization 'org-a'",
    ),
    "test_rejects_second_approval_by_the_same_reviewer": (
        lambda led: led.do("rob", review(led.submission)),
        lambda led: ("rob", review(led.submission)),
        "one approval per reviewer",
    ),
    "test_rejects_approval_after_a_rejection": (
        lambda led: led.do("ruth", review(led.submission, Decision.REJECT)),
        lambda led: ("rob", review(led.submission)),
        "a rejection is final",
    ),
    "test_rejects_revocation_after_a_rejection": (
        lambda led: led.do("ruth", review(led.submission, Decision.REJECT)),
        lambda led: ("rob", review(led.submission, Decision.REVOKE)),
        "a rejection is final",
    ),
    "test_rejects_approval_after_a_revocation": (
        _approved_then_revoked,
        lambda led: ("ray", review(led.submission)),
        "it stays blocked",
    ),
    "test_rejects_approval_by_a_revoked_reviewer": (
        lambda led: led.do("admin", revoke_member(led.world, "rob")),
        lambda led: ("rob", review(led.submission)),
        "'rob' was revoked at entry",
    ),
    "test_rejects_review_by_a_non_reviewer_auditor": (
        _nothing,
        lambda led: ("audrey", review(led.submission)),
        "'audrey' is an auditor, only a reviewer",
    ),
    "test_rejects_review_by_a_non_reviewer_site": (
        _nothing,
        lambda led: ("site-a", review(led.submission)),
        "only a reviewer",
    ),
    "test_rejects_review_by_a_non_member": (
        _nothing,
        lambda led: ("mallory", review(led.submission)),
        "not a member",
    ),
    "test_rejects_review_of_an_unknown_submission": (
        _nothing,
        lambda led: ("rob", review("ab" * 32)),
        "submission abababababababab is not in the ledger",
    ),
    "test_rejects_review_naming_a_task_as_submission": (
        lambda led: led.do("alice", task()),
        lambda led: ("rob", review(led.world.entries[-1].event.event.id)),
        "is not in the ledger",
    ),
    "test_rejects_a_digest_submitted_twice": (
        _nothing,
        lambda led: ("bella", submission(f"other/name:2@{DIGEST}")),
        "a digest is submitted once",
    ),
    "test_rejects_submission_by_a_reviewer": (
        _nothing,
        lambda led: ("rob", submission(f"x/y@{OTHER}")),
        "only a researcher may post this",
    ),
    "test_rejects_revocation_of_an_unapproved_digest": (
        lambda led: led.do("rob", review(led.submission)),
        lambda led: ("ruth", review(led.submission, Decision.REVOKE)),
        "only an approved digest may be revoked",
    ),
    "test_rejects_rejection_of_an_approved_digest": (
        _approved,
        lambda led: ("rick", review(led.submission, Decision.REJECT)),
        "revoke it instead",
    ),
    "test_rejects_review_policy_by_a_researcher": (
        _nothing,
        lambda led: ("alice", ReviewPolicy(approvals=1, organizations=1)),
        "only an admin may post this",
    ),
}


@pytest.mark.parametrize(("setup", "attack", "message"), ATTACKS.values(), ids=ATTACKS.keys())
def test_review_rules_refuse(setup: Setup, attack: Attack, message: str) -> None:
    ledger = Ledger()
    setup(ledger)
    before = json.dumps(ledger.state.to_dict(), sort_keys=True)
    author, body = attack(ledger)
    with pytest.raises(RuleViolation, match=message):
        ledger.attempt(author, body)
    assert json.dumps(ledger.state.to_dict(), sort_keys=True) == before  # nothing changed


MALFORMED: dict[str, tuple[Callable[[], object], str]] = {
    "test_rejects_submission_of_an_unpinned_tag": (
        lambda: submission("myconsortium/avg:1.0"),
        "not pinned by digest",
    ),
    "test_rejects_submission_of_a_bare_name": (
        lambda: submission("myconsortium/avg"),
        "not pinned by digest",
    ),
    "test_rejects_submission_of_an_unparsable_image": (
        lambda: submission("-rf@" + DIGEST),
        "submission.body.image",
    ),
    "test_rejects_policy_needing_more_organizations_than_approvals": (
        lambda: ReviewPolicy(approvals=1, organizations=2),
        "cannot be met",
    ),
    "test_rejects_org_given_on_a_member_revoke": (
        lambda: Member(
            action=MemberAction.REVOKE,
            name="x",
            role=Role.REVIEWER,
            public_key="A" * 43 + "=",
            org="org-z",
        ),
        "org is given only when a member is added",
    ),
}


@pytest.mark.parametrize(("build", "message"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_review_bodies_are_refused(build: Callable[[], object], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        build()


def test_unpinned_submission_is_refused_on_the_wire() -> None:
    world = World(reviewers=True)
    signed = world.sign("alice", submission()).to_dict()
    signed["event"]["body"]["image"] = "myconsortium/avg:1.0"
    with pytest.raises(LedgerError, match="not pinned by digest"):
        SignedEvent.from_dict(signed)


# ---- how approvals count


def test_same_organization_approvals_count_once() -> None:
    ledger = Ledger()
    ledger.post("ruth", review(ledger.submission))
    ledger.post("rick", review(ledger.submission))  # org-c twice: two approvals, one organization
    standing = ledger.state.reviews[DIGEST]
    assert len(standing.approvals) == 2
    assert not ledger.approved_at_post()
    ledger.post("rob", review(ledger.submission))  # org-b
    assert ledger.approved_at_post()


def test_member_without_org_is_its_own_organization() -> None:
    ledger = Ledger()
    ledger.post("ray", review(ledger.submission))
    ledger.post("ruth", review(ledger.submission))
    assert ledger.approved_at_post()


def test_reviewer_revoked_later_keeps_the_approval() -> None:
    ledger = Ledger()
    _approved(ledger)
    ledger.post("admin", revoke_member(ledger.world, "rob"))
    assert "rob" in ledger.state.reviews[DIGEST].approvals
    assert ledger.approved_at_post()


def test_revocation_blocks_the_digest_from_then_on() -> None:
    ledger = Ledger()
    _approved(ledger)
    before = ledger.post("alice", task()).event.event.id
    ledger.post("ray", review(ledger.submission, Decision.REVOKE))
    assert not ledger.approved_at_post()
    assert ledger.state.tasks[before].approved_at_post  # a fact of its entry, kept


def test_policy_applies_to_tasks_appended_after_it() -> None:
    ledger = Ledger()
    ledger.post("rob", review(ledger.submission))
    assert not ledger.approved_at_post()
    ledger.post("admin", ReviewPolicy(approvals=1, organizations=1))
    assert ledger.approved_at_post()
    ledger.post("admin", ReviewPolicy(approvals=3, organizations=2))
    assert not ledger.approved_at_post()
    assert ledger.state.policy.index == ledger.world.entries[-2].index


def test_a_digest_once_approved_is_revoked_not_rejected_after_the_policy_is_raised() -> None:
    ledger = Ledger()
    _approved(ledger)
    ledger.post("admin", ReviewPolicy(approvals=3, organizations=2))  # no longer approved now
    with pytest.raises(RuleViolation, match="revoke it instead"):
        ledger.attempt("rick", review(ledger.submission, Decision.REJECT))
    ledger.post("rick", review(ledger.submission, Decision.REVOKE))
    assert ledger.state.reviews[DIGEST].revoked is not None


def test_tag_without_digest_is_never_approved_at_post() -> None:
    ledger = Ledger()
    _approved(ledger)
    assert not ledger.approved_at_post("myconsortium/avg:1.0")
    assert ledger.approved_at_post(f"myconsortium/avg:1.0@{DIGEST}")  # the digest decides


# ---- the review state in snapshots and in every replay


def _busy_ledger() -> Ledger:
    ledger = Ledger()
    _approved(ledger)
    ledger.post("alice", task())
    second = ledger.post("bella", submission(f"x/y@{OTHER}")).event.event.id
    ledger.post("ruth", review(second, Decision.REJECT))
    ledger.post("admin", ReviewPolicy(approvals=2, organizations=1))
    ledger.post("admin", revoke_member(ledger.world, "rob"))
    return ledger


def test_review_state_survives_a_snapshot() -> None:
    ledger = _busy_ledger()
    data = json.loads(json.dumps(ledger.state.to_dict()))
    again = State.from_dict(data)
    assert again.to_dict() == ledger.state.to_dict()
    assert again.submissions == ledger.state.submissions
    assert again.members["rob"].organization == "org-b"
    assert again.members["ray"].organization == "@ray"


def test_snapshot_written_before_review_existed_still_loads() -> None:
    world = World()
    state = State()
    apply(state, world.push(world.sign("admin", world.genesis_body())))
    apply(state, world.push(world.sign("alice", task())))
    old = state.to_dict()
    for name in ("policy", "reviews"):
        old.pop(name)
    loaded = State.from_dict(json.loads(json.dumps(old)))
    assert loaded.reviews == {} and loaded.policy.approvals == 2
    assert not next(iter(loaded.tasks.values())).approved_at_post
    apply(loaded, world.push(world.sign("alice", task())))  # and the ledger goes on


def test_parallel_replay_agrees_with_the_rules_on_reviews() -> None:
    ledger = _busy_ledger()
    records = [entry.canonical for entry in ledger.world.entries]
    serial = verify_ledger(records)
    parallel = verify_ledger(records, workers=2)
    assert serial.state.to_dict() == parallel.state.to_dict() == ledger.state.to_dict()


def test_invalid_review_in_parallel_replay_is_named_by_index() -> None:
    ledger = _busy_ledger()
    bad = ledger.world.push(ledger.world.sign("rita", review(ledger.submission)))
    records = [entry.canonical for entry in ledger.world.entries]
    for workers in (1, 2):
        with pytest.raises(LedgerError, match=f"entry {bad.index}"):
            verify_ledger(records, workers=workers)
