"""The listings (:mod:`ledger.listing`) over a replayed state, pure: filters, paging, the early
stop of ``since``, reasons, and the member index that follows rekeys and revocations."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from crypto.age import AgeIdentity
from ledger.bodies import (
    Cancel,
    EventId,
    Member,
    MemberAction,
    Result,
    ResultState,
    Status,
    StatusState,
    Task,
)
from ledger.errors import FormatError
from ledger.events import Entry, format_time
from ledger.listing import TaskQuery, list_members, list_tasks
from ledger.rules import apply
from ledger.state import State
from ledger.store.ledger import Ledger
from ledger.view import TaskSnapshot
from tests.ledger.factory import World


class Scene:
    """Six tasks t0..t5 by alice; t1 rejected at site-a, t2 cancelled, t3 interrupted at site-b,
    t4 completed at site-a; alice rekeyed and site-c revoked."""

    def __init__(self) -> None:
        self.world = World()
        self.state = State()
        self.ids: list[str] = []
        self.add(self.world.sign("admin", self.world.genesis_body()))
        for n in range(6):
            task = Task(
                image=f"myconsortium/{'avg' if n % 2 else 'count'}:{n}",
                sites=("site-a", "site-b"),
                config={"n": n},
                label="even" if n % 2 == 0 else None,
            )
            self.ids.append(self.add(self.world.sign("alice", task)).event.event.id)
        self.site("site-a", Result(task=self.task(1), state=ResultState.REJECTED, reason="nope"))
        self.add(self.world.sign("alice", Cancel(task=self.task(2), reason="oops")))
        self.site("site-b", Status(task=self.task(3), state=StatusState.INTERRUPTED, reason="rb"))
        self.site("site-a", Result(task=self.task(4), state=ResultState.COMPLETED))
        self.site("site-b", Result(task=self.task(4), state=ResultState.COMPLETED))
        recipient = AgeIdentity.from_bytes(b"\x02" * 32).recipient.to_string()
        self.rekey = self.add(self.world.sign("alice", self.member("alice", recipient))).index
        self.revoke = self.add(self.world.sign("admin", self.member("site-c", None))).index

    def member(self, name: str, recipient: str | None) -> Member:
        return Member(
            action=MemberAction.REKEY if recipient else MemberAction.REVOKE,
            name=name,
            role=self.world.roles[name],
            public_key=self.world.keys[name].public.b64(),
            encryption_key=recipient,
        )

    def task(self, n: int) -> EventId:
        return EventId(self.ids[n])

    def add(self, signed: object) -> Entry:
        entry = self.world.push(signed)  # type: ignore[arg-type]
        apply(self.state, entry)
        return entry

    def site(self, name: str, body: object) -> None:
        self.add(self.world.sign(name, body))  # type: ignore[arg-type]

    def entry_at(self, index: int) -> Entry:
        return self.world.entries[index]

    def listed(self, **query: object) -> list[int]:
        newest = [
            TaskSnapshot.of(t)
            for t in sorted(self.state.tasks.values(), key=lambda t: t.index, reverse=True)
        ]
        page = list_tasks(newest, self.entry_at, TaskQuery(**query), size=self.state.size)  # type: ignore[arg-type]
        return [self.ids.index(line.task) for line in page.tasks]


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, [5, 4, 3, 2, 1, 0]),
        ({"author": "alice"}, [5, 4, 3, 2, 1, 0]),
        ({"author": "bob"}, []),
        ({"label": "even"}, [4, 2, 0]),
        ({"state": "rejected"}, [1]),
        ({"state": "cancelled"}, [2]),
        ({"state": "interrupted", "site": "site-b"}, [3]),
        ({"state": "interrupted", "site": "site-a"}, []),
        ({"state": "completed"}, [4]),
        ({"state": "finished"}, [4]),
        ({"state": "unfinished"}, [5, 3, 2, 1, 0]),
        ({"state": "pending", "site": "site-a"}, [5, 3, 2, 0]),
        ({"image": re.compile(r"avg")}, [5, 3, 1]),
        ({"image": re.compile(r":4$")}, [4]),
        ({"after": 4}, [2, 1, 0]),  # t0 is entry 1: indexes below 4 are t2, t1, t0
        ({"limit": 2}, [5, 4]),
    ],
)
def test_task_filters(scene: Scene, query: dict[str, object], expected: list[int]) -> None:
    assert scene.listed(**query) == expected


def test_reasons_and_cancellation(scene: Scene) -> None:
    newest = [TaskSnapshot.of(t) for t in scene.state.tasks.values()][::-1]
    page = list_tasks(newest, scene.entry_at, TaskQuery(), size=scene.state.size)
    lines = {scene.ids.index(line.task): line for line in page.tasks}
    assert lines[1].sites["site-a"].reason == "nope"
    assert lines[3].sites["site-b"].reason == "rb" and lines[3].sites["site-a"].reason is None
    assert lines[4].sites["site-a"].reason is None  # completed: no reason read
    assert lines[2].cancelled is not None and lines[2].cancelled.reason == "oops"
    assert lines[0].label == "even" and lines[0].image == "myconsortium/count:0"
    assert lines[0].created == scene.entry_at(lines[0].index).received


def test_pages_chain_by_next(scene: Scene) -> None:
    newest = [TaskSnapshot.of(t) for t in scene.state.tasks.values()][::-1]
    seen, after = [], None
    while True:
        query = TaskQuery(limit=4, after=after)
        page = list_tasks(newest, scene.entry_at, query, size=scene.state.size)
        seen += [scene.ids.index(line.task) for line in page.tasks]
        if page.next is None:
            break
        after = page.next
    assert seen == [5, 4, 3, 2, 1, 0]


def test_since_stops_at_the_first_older_task_and_reads_no_further(scene: Scene) -> None:
    t3 = scene.entry_at(scene.state.tasks[scene.task(3)].index)
    read: list[int] = []

    def entry_at(index: int) -> Entry:
        read.append(index)
        return scene.entry_at(index)

    newest = [TaskSnapshot.of(t) for t in scene.state.tasks.values()][::-1]
    page = list_tasks(newest, entry_at, TaskQuery(since=t3.received), size=scene.state.size)
    assert [scene.ids.index(line.task) for line in page.tasks] == [5, 4, 3]
    assert scene.state.tasks[scene.task(1)].index not in read  # stopped at t2


@pytest.mark.parametrize(
    "query",
    [
        {"state": "exploded"},
        {"limit": 0},
        {"limit": 501},
        {"since": "yesterday"},
        {"since": "2026-11-25T17:00:00"},  # no zone
    ],
)
def test_refuses_bad_queries(query: dict[str, object]) -> None:
    with pytest.raises(FormatError):
        TaskQuery(**query)  # type: ignore[arg-type]


def test_members_index_follows_rekey_and_revocation(scene: Scene) -> None:
    members = {m.name: m for m in list_members(scene.state.members.values())}
    assert members["alice"].index == scene.rekey and members["alice"].encryption_key
    assert members["site-c"].index == members["site-c"].revoked == scene.revoke
    assert members["site-a"].index == 0 and members["site-a"].revoked is None
    assert list_members(scene.state.members.values())[0].name == "admin"


def test_the_rekey_index_survives_a_snapshot(scene: Scene) -> None:
    restored = State.from_dict(scene.state.to_dict())
    assert restored.members["alice"].changed == scene.rekey
    members = {m.name: m for m in list_members(restored.members.values())}
    assert members["alice"].index == scene.rekey


def test_since_compares_times_not_text() -> None:
    scene = Scene()
    first = scene.entry_at(scene.state.tasks[scene.task(0)].index)
    # the same moment written with another zone offset selects the same tasks
    moment = first.received.replace("Z", "+00:00")
    assert scene.listed(since=moment) == [5, 4, 3, 2, 1, 0]
    later = format_time(datetime.fromisoformat(first.received) + timedelta(days=1))
    assert scene.listed(since=later) == []


def test_registry_listing_during_appends_names_only_committed_entries(tmp_path: Path) -> None:
    """Listings taken while appends and statuses pour in never name an entry beyond their
    ``size`` (every index they give can be proven against a checkpoint of that size)."""
    world = World()
    ledger = Ledger.create(
        tmp_path / "data", genesis=world.sign("admin", world.genesis_body()), log_key=world.log_key
    )
    stop = threading.Event()
    problems: list[str] = []

    def append() -> None:
        n = 0
        while not stop.is_set():
            task = world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={"n": n}))
            ledger.append(task)
            ledger.append(
                world.sign("site-a", Status(task=task.event.id, state=StatusState.ACCEPTED))
            )
            n += 1

    def listing() -> None:
        try:
            list_while_appending()
        except Exception as exc:  # a listing that fails is a failure of the test
            problems.append(repr(exc))

    def list_while_appending() -> None:
        while not stop.is_set():
            page = ledger.task_list(TaskQuery(limit=20))
            named = [line.index for line in page.tasks]
            named += [s.index for line in page.tasks for s in line.sites.values() if s.index]
            if any(index >= page.size for index in named):
                problems.append(f"size {page.size}, named {max(named)}")
            size, members = ledger.member_list()
            if any(m.index >= size for m in members):
                problems.append(f"members at size {size}")

    threads = [threading.Thread(target=append) for _ in range(3)]
    threads.append(threading.Thread(target=listing))
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not problems:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        ledger.close()
    assert problems == []
    assert ledger.size > 10  # appends did run meanwhile
