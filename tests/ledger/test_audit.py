"""The auditor catches tampering: each attack in its own named test."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.audit import audit
from ledger.bodies import Output, Result, ResultState, Task
from ledger.errors import RollbackError, SameSizeForkError, VerificationError
from ledger.store.ledger import Ledger
from ledger.store.readlog import read_log
from ledger.store.records import encode_record
from tests.ledger.factory import World


def _build(tmp_path: Path, world: World, tasks: int = 4, *, tag: str = "") -> Ledger:
    ledger = Ledger.create(
        tmp_path / f"data{tag}",
        genesis=world.sign("admin", world.genesis_body()),
        log_key=world.log_key,
        clock=world.clock,
    )
    output = ledger.blobs.put(b"{}")  # a result names blobs the registry holds
    for n in range(tasks):
        task = ledger.append(
            world.sign(
                "alice", Task(image=f"myconsortium/avg:{n}{tag}", sites=("site-a",), config={})
            )
        ).entry
        result = Result(
            task=task.event.event.id,
            state=ResultState.COMPLETED,
            outputs=(Output(name="r.json", sha256=output, size=2),),
            image_digest="sha256:" + "cd" * 32,
            exit_code=0,
        )
        ledger.append(world.sign("site-a", result))
    return ledger


def test_audit_reports_who_ran_what_where(tmp_path: Path) -> None:
    world = World()
    ledger = _build(tmp_path, world)
    note = ledger.checkpoint()
    ledger.close()
    verified, report = audit([read_log(tmp_path / "data")], checkpoint=note, workers=2)
    assert report.size == verified.size == 9
    assert report.checkpoint_size == 9
    assert [m.name for m in report.members][:2] == ["admin", "alice"]
    assert len(report.tasks) == 4
    run = report.tasks[0].sites["site-a"]
    assert (report.tasks[0].author, run.state, run.image_digest) == (
        "alice",
        "completed",
        "sha256:" + "cd" * 32,
    )


def test_audit_catches_a_flipped_byte_in_the_data_directory(tmp_path: Path) -> None:
    world = World()
    _build(tmp_path, world).close()
    log = tmp_path / "data" / "entries.log"
    raw = bytearray(log.read_bytes())
    target = raw.index(b"myconsortium/avg:2")  # inside entry 5
    raw[target] ^= 0x20
    log.write_bytes(bytes(raw))
    with pytest.raises(VerificationError) as caught:
        read_log(tmp_path / "data")
    assert caught.value.index == 5
    assert "damaged" in str(caught.value)


def test_audit_catches_a_deleted_entry(tmp_path: Path) -> None:
    world = World()
    ledger = _build(tmp_path, world)
    records = ledger.entries_bytes(0, ledger.size)
    ledger.close()
    log = tmp_path / "data" / "entries.log"
    log.write_bytes(b"".join(encode_record(r) for i, r in enumerate(records) if i != 4))
    with pytest.raises(VerificationError) as caught:
        audit([read_log(tmp_path / "data")])
    assert caught.value.index == 4


def test_audit_catches_history_rewritten_and_re_signed_with_the_same_log_key(
    tmp_path: Path,
) -> None:
    world = World()
    honest = _build(tmp_path, world)
    seen = honest.checkpoint()  # the auditor stored this checkpoint last time
    honest.close()
    # The registry rebuilds its ledger with other tasks and signs fresh checkpoints.
    rewritten_world = World()
    rewritten = _build(tmp_path, rewritten_world, tag="-evil")
    records = rewritten.entries_bytes(0, rewritten.size)
    rewritten.close()
    audit([records])  # on its own, the rewritten ledger is consistent...
    with pytest.raises(SameSizeForkError) as caught:
        audit([records], trusted=seen)  # ...but not with what the auditor saw before
    assert caught.value.trusted == seen  # the evidence travels with the error


def test_audit_catches_an_entry_the_rules_forbid_even_if_the_registry_accepted_it(
    tmp_path: Path,
) -> None:
    world = World()
    world.push(world.sign("admin", world.genesis_body()))
    task = world.push(world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={})))
    forged = Result(task=task.event.event.id, state=ResultState.COMPLETED, outputs=())
    world.push(world.sign("alice", forged))  # a researcher posting a result, chained properly
    with pytest.raises(VerificationError, match="researcher") as caught:
        audit([[e.canonical for e in world.entries]])
    assert caught.value.index == 2


def test_audit_catches_entries_removed_after_a_checkpoint(tmp_path: Path) -> None:
    world = World()
    ledger = _build(tmp_path, world)
    seen = ledger.checkpoint()
    records = ledger.entries_bytes(0, ledger.size)
    ledger.close()
    with pytest.raises(RollbackError, match="went back"):
        audit([records[:-2]], trusted=seen)
