"""The inbox: what ``received_files`` gives an executor, and what it never gives."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from ledger.bodies import EventId, Transfer
from siteclient.errors import StateError
from siteclient.fileservice.inbox import Inbox, InboxEntry, received_files
from tests.ledger.factory import World

TASK = "7a" * 32


def _receive(
    inbox: Inbox, world: World, data: bytes, *, index: int | None, name: str | None = "out.age"
) -> InboxEntry:
    sha256, size = inbox.blobs(TASK).put_stream([data])
    body = Transfer(
        sender="site-a", recipient="site-c", task=EventId(TASK), sha256=sha256, size=size
    )
    entry = InboxEntry(
        task=TASK,
        sha256=sha256,
        size=size,
        sender="site-a",
        name=name,
        received="2026-11-25T17:00:00.000000Z",
        transfer=world.sign("site-c", body),
        transfer_index=index,
    )
    inbox.save(entry)
    return entry


def test_received_files_lists_recorded_files_in_ledger_order(tmp_path: Path) -> None:
    inbox, world = Inbox(tmp_path / "inbox"), World()
    late = _receive(inbox, world, b"second", index=9, name="b.age")
    early = _receive(inbox, world, b"first", index=4, name=None)
    _receive(inbox, world, b"pending: not in the ledger yet", index=None)
    files = received_files(tmp_path / "inbox", TASK)
    assert [(f.sha256, f.transfer_index, f.name) for f in files] == [
        (early.sha256, 4, None),
        (late.sha256, 9, "b.age"),
    ]
    assert files[1].path.read_bytes() == b"second"
    assert files[1].path.parent.parent == tmp_path / "inbox" / TASK
    assert len(inbox.pending()) == 1


def test_received_files_leaves_out_missing_or_truncated_bytes(tmp_path: Path) -> None:
    inbox, world = Inbox(tmp_path), World()
    gone = _receive(inbox, world, b"removed by an operator", index=1)
    cut = _receive(inbox, world, b"truncated on disk", index=2)
    inbox.path(TASK, gone.sha256).unlink()
    path = inbox.path(TASK, cut.sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"trunc")
    assert received_files(inbox, TASK) == []


@pytest.mark.parametrize("task", ["..", "../" * 3 + "etc", TASK.upper(), TASK + "0", "", "a\0b"])
def test_received_files_refuses_a_task_id_that_could_name_a_path(tmp_path: Path, task: str) -> None:
    with pytest.raises(StateError, match="task id"):
        received_files(tmp_path, task)


def test_received_files_of_a_missing_inbox_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    assert received_files(tmp_path / "nowhere", TASK) == []
    assert not (tmp_path / "nowhere").exists()


def test_a_corrupt_receipt_is_a_clear_error(tmp_path: Path) -> None:
    inbox, world = Inbox(tmp_path), World()
    entry = _receive(inbox, world, b"data", index=3)
    meta = tmp_path / TASK / "meta" / f"{entry.sha256}.json"
    meta.write_text('{"v": 1, "task": "nope"}')
    with pytest.raises(StateError, match="malformed"):
        received_files(inbox, TASK)


def test_receipt_round_trips(tmp_path: Path) -> None:
    inbox, world = Inbox(tmp_path), World()
    entry = _receive(inbox, world, b"data", index=None)
    assert inbox.find(TASK, entry.sha256) == entry
    recorded = replace(entry, transfer_index=12)
    inbox.save(recorded)
    assert inbox.find(TASK, entry.sha256) == recorded
    assert inbox.find(TASK, hashlib.sha256(b"other").hexdigest()) is None


def test_clean_tmp_removes_half_written_uploads(tmp_path: Path) -> None:
    inbox, world = Inbox(tmp_path), World()
    _receive(inbox, world, b"whole", index=1)
    (tmp_path / TASK / "tmp" / "blob-crashed").write_bytes(b"half")
    assert inbox.clean_tmp() == 1
    assert len(received_files(inbox, TASK)) == 1
