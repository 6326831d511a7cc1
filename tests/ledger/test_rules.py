"""The authorization rules, table-driven and named for the attack."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ledger.bodies import (
    Cancel,
    Member,
    MemberAction,
    Output,
    Result,
    ResultState,
    Role,
    Status,
    StatusState,
    Task,
    Transfer,
)
from ledger.errors import ChainError, RuleViolation, SignatureError
from ledger.events import Entry, EntryHash, SignedEvent
from ledger.rules import apply
from ledger.state import State
from tests.ledger.factory import World, key

SHA = "ab" * 32


def _ledger() -> tuple[World, State, str]:
    """A ledger with genesis and one task for site-a and site-b; returns (world, state, task id)."""
    world = World()
    state = State()
    apply(state, world.push(world.sign("admin", world.genesis_body())))
    task = world.sign(
        "alice", Task(image="myconsortium/avg:1", sites=("site-a", "site-b"), config={})
    )
    apply(state, world.push(task))
    return world, state, task.event.id


def _revoke(world: World, name: str) -> Member:
    """An admin's revocation of ``name``, naming its role and key as the rules require."""
    return Member(
        action=MemberAction.REVOKE,
        name=name,
        role=world.roles[name],
        public_key=world.keys[name].public.b64(),
    )


def _result(task: str, state: ResultState = ResultState.COMPLETED) -> Result:
    return Result(
        task=task,  # type: ignore[arg-type]
        state=state,
        outputs=(Output(name="out.json", sha256=SHA, size=3),),
        exit_code=0,
    )


def test_happy_path_builds_the_projection() -> None:
    world, state, task = _ledger()
    apply(state, world.push(world.sign("site-a", Status(task=task, state=StatusState.STARTED))))  # type: ignore[arg-type]
    apply(state, world.push(world.sign("site-a", _result(task))))
    apply(state, world.push(world.sign("site-b", _result(task, ResultState.FAILED))))
    record = state.tasks[task]  # type: ignore[index]
    assert record.author == "alice"
    assert {n: p.state for n, p in record.sites.items()} == {
        "site-a": "completed",
        "site-b": "failed",
    }
    assert record.finished
    assert state.size == 5
    assert state.head == world.entries[-1].hash


Attack = Callable[[World, str], SignedEvent]

ATTACKS: dict[str, tuple[Attack, type[Exception], str]] = {
    "test_rejects_event_signed_by_non_member": (
        lambda w, t: w.sign("mallory", Task(image="x/y:1", sites=("site-a",), config={})),
        RuleViolation,
        "not a member",
    ),
    "test_rejects_researcher_posting_a_result": (
        lambda w, t: w.sign("alice", _result(t)),
        RuleViolation,
        "researcher",
    ),
    "test_rejects_site_answering_task_not_addressed_to_it": (
        lambda w, t: w.sign("site-c", _result(t)),
        RuleViolation,
        "not addressed to 'site-c'",
    ),
    "test_rejects_event_for_another_ledger_origin": (
        lambda w, t: w.sign("site-a", _result(t), ledger="other.example/ledger"),
        RuleViolation,
        "other.example/ledger",
    ),
    "test_rejects_consortium_event_after_index_0": (
        lambda w, t: w.sign("admin", w.genesis_body()),
        RuleViolation,
        "only at index 0",
    ),
    "test_rejects_site_posting_a_task": (
        lambda w, t: w.sign("site-a", Task(image="x/y:1", sites=("site-a",), config={})),
        RuleViolation,
        "site",
    ),
    "test_rejects_task_naming_unknown_site": (
        lambda w, t: w.sign("alice", Task(image="x/y:1", sites=("site-z",), config={})),
        RuleViolation,
        "'site-z' is not an active site",
    ),
    "test_rejects_task_naming_a_researcher_as_site": (
        lambda w, t: w.sign("alice", Task(image="x/y:1", sites=("alice",), config={})),
        RuleViolation,
        "'alice' is not an active site",
    ),
    "test_rejects_researcher_adding_members": (
        lambda w, t: w.sign(
            "alice",
            Member(
                action=MemberAction.ADD,
                name="eve",
                role=Role.ADMIN,
                public_key=key("eve").public.b64(),
            ),
        ),
        RuleViolation,
        "only an admin",
    ),
    "test_rejects_cancel_by_a_stranger_to_the_task": (
        lambda w, t: w.sign("site-a", Cancel(task=t)),  # type: ignore[arg-type]
        RuleViolation,
        "author or an admin",
    ),
    "test_rejects_result_for_unknown_task": (
        lambda w, t: w.sign("site-a", _result("cd" * 32)),
        RuleViolation,
        "not in the ledger",
    ),
    "test_rejects_cancelled_result_for_task_never_cancelled": (
        lambda w, t: w.sign("site-a", _result(t, ResultState.CANCELLED)),
        RuleViolation,
        "never cancelled",
    ),
    "test_rejects_auditor_posting_anything": (
        lambda w, t: w.sign("audrey", Status(task=t, state=StatusState.ACCEPTED)),  # type: ignore[arg-type]
        RuleViolation,
        "auditor",
    ),
    "test_rejects_transfer_recorded_by_someone_else": (
        lambda w, t: w.sign(
            "site-a",
            Transfer(sender="site-b", recipient="site-c", task=t, sha256=SHA, size=1),  # type: ignore[arg-type]
        ),
        RuleViolation,
        "receiving site",
    ),
    "test_rejects_replayed_task": (
        lambda w, t: w.entries[1].event,
        RuleViolation,
        "already in the ledger",
    ),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack(name: str) -> None:
    make, error, message = ATTACKS[name]
    world, state, task = _ledger()
    before = state.to_dict()
    with pytest.raises(error, match=message):
        apply(state, world.entry(make(world, task)))
    assert state.to_dict() == before, "a refused entry must leave the state untouched"


def test_rejects_second_result_for_same_task_and_site() -> None:
    world, state, task = _ledger()
    apply(state, world.push(world.sign("site-a", _result(task))))
    before = state.to_dict()
    with pytest.raises(RuleViolation, match="already posted a result"):
        apply(state, world.entry(world.sign("site-a", _result(task, ResultState.FAILED))))
    assert state.to_dict() == before


def test_rejects_event_signed_by_revoked_key() -> None:
    world, state, task = _ledger()
    revoke = _revoke(world, "site-b")
    apply(state, world.push(world.sign("admin", revoke)))
    with pytest.raises(RuleViolation, match="revoked at entry 2"):
        apply(state, world.entry(world.sign("site-b", _result(task))))


def test_rejects_revoking_the_last_admin() -> None:
    world, state, _ = _ledger()
    revoke = _revoke(world, "admin")
    with pytest.raises(RuleViolation, match="last active admin"):
        apply(state, world.entry(world.sign("admin", revoke)))


def test_rejects_forged_signature() -> None:
    world, state, task = _ledger()
    honest = world.sign("site-a", _result(task))
    forged = SignedEvent(
        event=honest.event, sig=world.keys["site-b"].sign(honest.event.signing_bytes())
    )
    with pytest.raises(SignatureError, match="entry 2"):
        apply(state, world.entry(forged))


def test_rejects_genesis_signed_by_non_admin() -> None:
    world = World()
    with pytest.raises(RuleViolation, match="signed by one of its admins"):
        apply(State(), world.entry(world.sign("alice", world.genesis_body())))


def test_rejects_first_entry_that_is_not_a_consortium() -> None:
    world = World()
    with pytest.raises(RuleViolation, match="must be a consortium"):
        apply(State(), world.entry(world.sign("admin", Cancel(task="ab" * 32))))  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["index", "prev"])
def test_rejects_broken_chain(field: str) -> None:
    world, state, task = _ledger()
    good = world.entry(world.sign("site-a", _result(task)))
    bad = Entry(
        index=good.index + 1 if field == "index" else good.index,
        prev=EntryHash("00" * 32) if field == "prev" else good.prev,
        received=good.received,
        event=good.event,
    )
    with pytest.raises(ChainError):
        apply(state, bad)


def test_cancel_then_cancelled_results_finish_the_task() -> None:
    world, state, task = _ledger()
    apply(state, world.push(world.sign("alice", Cancel(task=task))))  # type: ignore[arg-type]
    with pytest.raises(RuleViolation, match="already cancelled"):
        apply(state, world.entry(world.sign("admin", Cancel(task=task))))  # type: ignore[arg-type]
    apply(state, world.push(world.sign("site-a", _result(task, ResultState.CANCELLED))))
    apply(state, world.push(world.sign("site-b", _result(task, ResultState.CANCELLED))))
    assert state.tasks[task].finished  # type: ignore[index]


def test_snapshot_round_trip_preserves_state() -> None:
    world, state, task = _ledger()
    apply(state, world.push(world.sign("site-a", _result(task))))
    again = State.from_dict(state.to_dict())
    assert again.to_dict() == state.to_dict()
    assert again.member_by_key(world.keys["site-a"].key_id).name == "site-a"  # type: ignore[union-attr]


AGE = "age1" + "q" * 58


def _rekey(world: World, name: str, key: str = AGE, **extra: str) -> Member:
    return Member(
        action=MemberAction.REKEY,
        name=name,
        role=world.roles[name],
        public_key=world.keys[name].public.b64(),
        encryption_key=key,
        **extra,  # type: ignore[arg-type]
    )


def test_member_publishes_its_own_encryption_key_and_tasks_encrypt_for_it() -> None:
    world, state, _ = _ledger()
    apply(state, world.push(world.sign("alice", _rekey(world, "alice"))))
    assert state.members["alice"].encryption_key == AGE
    task = world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={}))
    apply(state, world.push(task))
    assert state.tasks[task.event.id].encrypt_for == AGE


def test_rejects_rekey_of_another_member_by_a_non_admin() -> None:
    world, state, _ = _ledger()
    with pytest.raises(RuleViolation, match="itself or an admin"):
        apply(state, world.entry(world.sign("site-a", _rekey(world, "alice"))))


def test_rejects_task_for_a_recipient_without_encryption_key() -> None:
    world, state, _ = _ledger()
    body = Task(image="a/b:1", sites=("site-a",), config={}, recipient="site-c")
    with pytest.raises(RuleViolation, match="no encryption key"):
        apply(state, world.entry(world.sign("alice", body)))


def test_rejects_delivery_to_a_site_without_file_service() -> None:
    world, state, _ = _ledger()
    apply(state, world.push(world.sign("site-c", _rekey(world, "site-c"))))
    body = Task(image="a/b:1", sites=("site-a",), config={}, recipient="site-c", deliver=True)
    with pytest.raises(RuleViolation, match="FileService"):
        apply(state, world.entry(world.sign("alice", body)))
    rekey = _rekey(world, "site-c", file_service="https://ttp.example:8443")
    apply(state, world.push(world.sign("site-c", rekey)))
    apply(state, world.push(world.sign("alice", body)))


def test_rejects_unknown_input_task() -> None:
    world, state, _ = _ledger()
    body = Task(image="a/b:1", sites=("site-a",), config={}, inputs=("ef" * 32,))  # type: ignore[arg-type]
    with pytest.raises(RuleViolation, match="input task"):
        apply(state, world.entry(world.sign("alice", body)))


def test_rejects_transfer_from_a_revoked_sender() -> None:
    world, state, task = _ledger()
    revoke = _revoke(world, "site-b")
    apply(state, world.push(world.sign("admin", revoke)))
    body = Transfer(sender="site-b", recipient="site-c", task=task, sha256=SHA, size=1)  # type: ignore[arg-type]
    with pytest.raises(RuleViolation, match="not an active member"):
        apply(state, world.entry(world.sign("site-c", body)))
