"""The planner, table-tested: (verified view, site) -> actions, with no I/O and no threads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from crypto.age import AgeIdentity
from ledger.bodies import (
    Cancel,
    Member,
    MemberAction,
    Result,
    ResultState,
    Role,
    Status,
    StatusState,
    Task,
)
from ledger.merkle import MerkleTree
from ledger.trust import Trusted, TrustedLog
from ledger.view import View
from siteclient.run import planner
from tests.fake_registry import note_for
from tests.ledger.factory import World

SITE = "site-a"


def publish(log: TrustedLog, world: World) -> View:
    """Verify every entry of ``world`` the log has not staged yet, as a follower does."""
    log.stage(world.entries[log.staged_size :])
    note = note_for(world.entries)
    span = log.consistency_span(log.verify_note(note))
    tree = MerkleTree()
    tree.extend(entry.leaf_hash for entry in world.entries)
    return log.commit(note, tree.consistency_proof(*span) if span else None)


def task(world: World, sites: tuple[str, ...] = (SITE,), **extra: object) -> str:
    body = Task(image="myconsortium/avg:1", sites=sites, config={}, **extra)  # type: ignore[arg-type]
    return world.push(world.sign("alice", body)).event.event.id


def result(world: World, task_id: str, site: str = SITE) -> None:
    world.push(world.sign(site, Result(task=task_id, state=ResultState.COMPLETED, outputs=())))


def genesis() -> tuple[World, TrustedLog]:
    world = World()
    world.push(world.sign("admin", world.genesis_body()))
    log = TrustedLog(Trusted())
    publish(log, world)
    return world, log


def kinds(actions: list[planner.Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


Scenario = Callable[[World, TrustedLog], tuple[View, list[str]]]


def _task_for_this_site(world: World, log: TrustedLog) -> tuple[View, list[str]]:
    task(world)
    return publish(log, world), ["Run"]


def _task_for_another_site(world: World, log: TrustedLog) -> tuple[View, list[str]]:
    task(world, sites=("site-b",))
    return publish(log, world), []


def _task_already_finished_here(world: World, log: TrustedLog) -> tuple[View, list[str]]:
    # The task and this site's result arrive in one sync: nothing to run, the folder goes.
    task_id = task(world)
    result(world, task_id)
    return publish(log, world), ["Cleanup"]


def _result_by_another_site(world: World, log: TrustedLog) -> tuple[View, list[str]]:
    task_id = task(world, sites=(SITE, "site-b"))
    publish(log, world)
    result(world, task_id, site="site-b")
    return publish(log, world), []


def _cancel(world: World, log: TrustedLog) -> tuple[View, list[str]]:
    task_id = task(world)
    publish(log, world)
    world.push(world.sign("alice", Cancel(task=task_id)))
    return publish(log, world), ["StopTask"]


def _status_only(world: World, log: TrustedLog) -> tuple[View, list[str]]:
    task_id = task(world)
    publish(log, world)
    world.push(world.sign(SITE, Status(task=task_id, state=StatusState.ACCEPTED)))
    return publish(log, world), []


SCENARIOS: list[tuple[str, Scenario]] = [
    ("task_for_this_site_is_run", _task_for_this_site),
    ("task_for_another_site_is_ignored", _task_for_another_site),
    ("task_finished_here_is_not_run_again", _task_already_finished_here),
    ("result_of_another_site_is_ignored", _result_by_another_site),
    ("cancel_stops_the_task", _cancel),
    ("own_status_plans_nothing", _status_only),
]


@pytest.mark.parametrize("scenario", [s for _, s in SCENARIOS], ids=[n for n, _ in SCENARIOS])
def test_plan(scenario: Scenario) -> None:
    world, log = genesis()
    view, expected = scenario(world, log)
    assert kinds(planner.plan(view, site=SITE, key_id=world.keys[SITE].key_id)) == expected


def test_resume_lists_unfinished_tasks_of_this_site_oldest_first() -> None:
    world, log = genesis()
    first, done, other, cancelled = (
        task(world),
        task(world),
        task(world, sites=("site-b",)),
        task(world),
    )
    result(world, done)
    world.push(world.sign("alice", Cancel(task=cancelled)))
    view = publish(log, world)
    assert [(r.task, r.cancelled) for r in planner.resume(view, site=SITE)] == [
        (first, False),
        (cancelled, True),
    ]
    assert other not in {r.task for r in planner.resume(view, site=SITE)}


def test_delivery_names_the_recipient_and_its_file_service() -> None:
    world, log = genesis()
    ttp = AgeIdentity.generate().recipient.to_string()
    rekey = Member(
        action=MemberAction.REKEY,
        name="site-b",
        role=Role.SITE,
        public_key=world.keys["site-b"].public.b64(),
        encryption_key=ttp,
        file_service="https://ttp.example:8443",
    )
    world.push(world.sign("site-b", rekey))
    task_id = task(world, sites=(SITE,), recipient="site-b", deliver=True)
    view = publish(log, world)
    assert planner.delivery(view, task_id) == planner.Delivery(
        encrypt_for=ttp, deliver_to="site-b", deliver_url="https://ttp.example:8443"
    )
    assert planner.delivery(view, "00" * 32) == planner.Delivery()  # type: ignore[arg-type]


def test_view_is_not_changed_by_entries_staged_after_it() -> None:
    """Folded before verified, fixed: a published view is immutable, and entries staged into
    the working state after it (not yet covered by a checkpoint) never show in it."""
    world, log = genesis()
    task_id = task(world)
    view = publish(log, world)
    result(world, task_id)
    log.stage(world.entries[log.staged_size :])  # staged, no checkpoint yet
    assert not planner.finished_here(view, task_id, SITE)
    assert view.size == 2 and view.tasks[task_id].sites[SITE].state == "pending"
    with pytest.raises(TypeError):
        view.tasks[task_id].sites[SITE] = None  # type: ignore[index]
    assert planner.finished_here(publish(log, world), task_id, SITE)
