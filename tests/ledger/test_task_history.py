"""Each site's history on a task: every status and result index, in order, kept by the
registry's read model across restarts (from a snapshot, and by replay from an older one)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ledger.bodies import Output, Result, ResultState, Status, StatusState, Task
from ledger.rules import apply
from ledger.state import State
from ledger.store.ledger import Ledger
from ledger.store.snapshot import MANIFEST, POINTER, _manifest_digest
from tests.ledger.factory import World

SHA = "ab" * 32


def _busy(tmp_path: Path, world: World) -> tuple[Ledger, str, dict[str, list[int]]]:
    """A task for site-a and site-b whose statuses and results interleave with another task's."""
    ledger = Ledger.create(
        tmp_path / "data",
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        clock=world.clock,
    )
    sites = ("site-a", "site-b")
    task = ledger.append(world.sign("alice", Task(image="a/b:1", sites=sites, config={})))
    other = ledger.append(world.sign("alice", Task(image="a/b:1", sites=sites, config={"n": 1})))
    task_id, other_id = task.entry.event.event.id, other.entry.event.event.id
    outputs = (Output(name="o.txt", sha256=ledger.blobs.put(b"o"), size=1),)
    expected: dict[str, list[int]] = {"site-a": [], "site-b": []}
    steps = [
        ("site-a", Status(task=task_id, state=StatusState.ACCEPTED)),
        ("site-b", Status(task=other_id, state=StatusState.ACCEPTED)),
        ("site-b", Status(task=task_id, state=StatusState.ACCEPTED)),
        ("site-a", Status(task=task_id, state=StatusState.STARTED)),
        ("site-a", Status(task=task_id, state=StatusState.INTERRUPTED)),
        ("site-a", Status(task=task_id, state=StatusState.STARTED)),
        ("site-b", Status(task=task_id, state=StatusState.STARTED)),
        ("site-a", Result(task=task_id, state=ResultState.COMPLETED, outputs=outputs)),
        ("site-b", Result(task=other_id, state=ResultState.FAILED, outputs=())),
    ]
    for site, body in steps:
        entry = ledger.append(world.sign(site, body)).entry  # type: ignore[arg-type]
        if body.task == task_id:
            expected[site].append(entry.index)
    return ledger, task_id, expected


def _histories(ledger: Ledger, task_id: str) -> dict[str, list[int]]:
    sites = ledger.task_view(task_id)["sites"]
    return {name: site["history"] for name, site in sites.items()}


def test_history_lists_every_status_and_result_of_each_site_in_order(
    tmp_path: Path,
) -> None:
    world = World()
    ledger, task_id, expected = _busy(tmp_path, world)
    assert _histories(ledger, task_id) == expected
    assert len(expected["site-a"]) == 5 and len(expected["site-b"]) == 2
    view = ledger.task_view(task_id)["sites"]
    assert view["site-a"]["index"] == expected["site-a"][-1]  # the latest is the last one
    ledger.close()

    reopened = Ledger.open(tmp_path / "data", log_key=world.log_key, clock=world.clock)
    assert reopened._recover()  # from the snapshot close() wrote
    assert _histories(reopened, task_id) == expected
    reopened.close()


def test_a_snapshot_without_histories_is_replayed_not_served_empty(tmp_path: Path) -> None:
    world = World()
    ledger, task_id, expected = _busy(tmp_path, world)
    ledger.close()
    data = tmp_path / "data"
    # Rewrite the snapshot as the previous format wrote it: no histories, format 2.
    folder = data / "snapshots" / (data / POINTER).read_text()
    state = json.loads((folder / "state.json").read_bytes())
    for task in state["tasks"].values():
        task["sites"] = {name: p[:3] for name, p in task["sites"].items()}
    raw = json.dumps(state, separators=(",", ":")).encode()
    (folder / "state.json").write_bytes(raw)
    manifest = json.loads((folder / MANIFEST).read_bytes())
    manifest.pop("digest")
    manifest["format"] = 2
    manifest["files"]["state.json"] = hashlib.sha256(raw).hexdigest()
    manifest["digest"] = _manifest_digest(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))

    reopened = Ledger.open(data, log_key=world.log_key, clock=world.clock)
    assert _histories(reopened, task_id) == expected  # replayed from the log
    reopened.close()
    again = Ledger.open(data, log_key=world.log_key, clock=world.clock)
    assert again._recover()  # and the replay left a snapshot of the new format
    assert _histories(again, task_id) == expected
    again.close()


def test_a_state_saved_without_histories_says_unknown_and_goes_on() -> None:
    """A site client's trusted state saved before histories were kept loads with the history
    unknown (None), never an empty list, and stays so as entries follow."""
    world = World()
    state = State()
    apply(state, world.push(world.sign("admin", world.genesis_body())))
    signed = world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={}))
    apply(state, world.push(signed))
    task_id = signed.event.id
    apply(state, world.push(world.sign("site-a", Status(task=task_id, state=StatusState.ACCEPTED))))
    assert state.tasks[task_id].sites["site-a"].history == (2,)
    old = json.loads(json.dumps(state.to_dict()))
    for task in old["tasks"].values():
        task["sites"] = {name: p[:3] for name, p in task["sites"].items()}
    loaded = State.from_dict(old)
    apply(loaded, world.push(world.sign("site-a", Status(task=task_id, state=StatusState.STARTED))))
    progress = loaded.tasks[task_id].sites["site-a"]
    assert progress.history is None and progress.state == "started" and progress.index == 3
    assert State.from_dict(loaded.to_dict()).tasks[task_id].sites["site-a"].history is None
