"""A signed event held back through an outage longer than the registry's time window (a site's
journaled result, a FileService's pending transfer receipt) is signed again with the current time
and the same body when the registry answers ``event-time-out-of-window``: never lost, never
retried forever."""

from __future__ import annotations

import json
from pathlib import Path

from api.client.answers import Appended
from api.errors import PROBLEM_BASE, problem_error
from ledger.bodies import EventId, Result, ResultState, Transfer
from ledger.events import SignedEvent
from siteclient.fileservice.inbox import Inbox, InboxEntry
from siteclient.fileservice.transfers import TransferRecorder
from siteclient.follow.follower import Follower
from siteclient.follow.state import TrustStore
from siteclient.run.agent import Agent
from tests.fake_registry import FakeRegistry, history, note_for
from tests.ledger.factory import World

TASK = "7a" * 32
NOW = 1_800_000_000.0  # the FileService's clock, long after the receipt was first signed


class WindowedRegistry:
    """Refuses events dated before ``oldest`` as the registry does; records what it appended."""

    def __init__(self, oldest: str) -> None:
        self.oldest = oldest
        self.appended: list[SignedEvent] = []

    def post_event(self, signed: SignedEvent) -> Appended:
        if signed.event.time < self.oldest:
            raise problem_error(
                422,
                {
                    "type": PROBLEM_BASE + "event-time-out-of-window",
                    "title": "Event time out of window",
                    "detail": f"event.time {signed.event.time} is too old",
                },
            )
        self.appended.append(signed)
        return Appended(
            index=len(self.appended),
            event_id=signed.event.id,
            hash="00" * 32,
            received=signed.event.time,
            created=True,
        )


def test_pending_transfer_older_than_the_window_is_signed_again_and_recorded(
    tmp_path: Path,
) -> None:
    world = World()
    inbox = Inbox(tmp_path / "inbox")
    sha256, size = inbox.blobs(TASK).put_stream([b"ciphertext"])
    registry = WindowedRegistry(oldest="2027-01-01T00:00:00Z")
    recorder = TransferRecorder(
        site="site-c", key=world.keys["site-c"], inbox=inbox, client=registry, clock=lambda: NOW
    )
    # The receipt as it was signed before the outage (dated by the test world, long ago).
    old = world.sign(
        "site-c",
        Transfer(sender="site-a", recipient="site-c", task=EventId(TASK), sha256=sha256, size=size),
    )
    pending = InboxEntry(
        task=TASK,
        sha256=sha256,
        size=size,
        sender="site-a",
        name="out.age",
        received=old.event.time,
        transfer=old,
    )
    inbox.save(pending)
    assert recorder.finish_pending() == 0  # nothing left pending
    (appended,) = registry.appended
    assert appended.event.body == old.event.body and appended.event.time > old.event.time
    (recorded,) = inbox.entries(TASK)
    assert recorded.recorded and recorded.transfer == appended
    assert inbox.path(TASK, sha256).read_bytes() == b"ciphertext"  # the file was kept


def test_journaled_result_older_than_the_window_is_signed_again_and_posted(
    tmp_path: Path,
) -> None:
    world = history(1)  # a ledger with nothing for the site to run
    feed = FakeRegistry()
    feed.serve(world.entries, note_for(world.entries))
    follower = Follower(feed, TrustStore(tmp_path / "state"), log_key=None, genesis=None)  # type: ignore[arg-type]
    registry = WindowedRegistry(oldest="")
    agent = Agent(
        site="site-a",
        key=world.keys["site-a"],
        client=registry,  # type: ignore[arg-type]
        follower=follower,
        execute=lambda job, folder, report: Result(task=job.task_id, state=ResultState.FAILED),
        work_dir=tmp_path / "work",
    )
    agent.step()
    task_id = EventId("ab" * 32)  # the task the result was journaled for
    old = world.sign("site-a", Result(task=task_id, state=ResultState.COMPLETED, outputs=()))
    registry.oldest = old.event.time + "~"  # the window has moved past the journaled result
    journal = tmp_path / "result.json"
    journal.write_bytes(json.dumps(old.to_dict()).encode())
    agent._post_journaled(journal)
    resigned = [e for e in registry.appended if isinstance(e.event.body, Result)]
    assert [e.event.body for e in resigned] == [old.event.body]
    assert resigned[0].event.time > old.event.time
    assert SignedEvent.from_json(journal.read_bytes()) == resigned[0]  # journaled before sent
    agent.close()
