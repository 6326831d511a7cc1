"""A registry holds its store to what it signed.

Every case starts from a real registry's data directory (``pht init``, then ``pht serve`` as a
process fed events and blobs through the client, stopped; see :mod:`tests.ledger.damage`),
damages a copy as a disk fault or an intruder would (records rewritten with recomputed
checksums, a snapshot edited, a blob flipped or deleted) and opens it again: damage is detected,
named (the entry, file or blob), never served and never signed over; a damaged snapshot is never
loaded as is; a torn tail still recovers without losing an acknowledged entry.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from crypto import SigningKey
from ledger.bodies import Member, MemberAction, Role
from ledger.errors import CorruptStoreError, DamagedBlobError, DamagedEntryError, RuleViolation
from ledger.store.blobcheck import check_blobs
from ledger.store.ledger import Ledger
from ledger.store.snapshot import read_snapshot
from ledger.verify import verify_ledger
from tests.ledger.damage import (
    Registry,
    alter_entry,
    alter_in_place,
    append_copy_of_last,
    blob_path,
    build_registry,
    crash_registry,
    duplicate_record,
    flip_byte,
    forge_manifest,
    make_admin,
    records,
    rewrite_index_field,
    signed,
    snapshot_dir,
    swap_records,
    tear_tail,
)
from tests.ledger.factory import World

CRASHED = 4  # entries appended after the snapshot, before a SIGKILL


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("registry"), World())


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory, pristine: Registry) -> Registry:
    """The pristine registry after more appends and a SIGKILL: entries ``pristine.size`` on lie
    after its snapshot and its stored checkpoint."""
    data = pristine.copy(tmp_path_factory.mktemp("crashed") / "data")
    size = crash_registry(data, pristine.world, CRASHED)
    assert size == pristine.size + CRASHED
    return dataclasses.replace(pristine, data=data, size=size)


def open_ledger(data: Path) -> Ledger:
    return Ledger.open(data, log_key=SigningKey.load(data / "log.key"))


# ---- damage to the entry log


Damage = Callable[[Path, int], tuple[int, str]]
"""Damage a data directory whose snapshot covers ``s`` entries; return the entry that must be
named and what must be said about it."""


def _altered(index: int) -> Damage:
    def damage(data: Path, s: int) -> tuple[int, str]:
        alter_entry(data, index)
        return index, "its bytes were altered"

    return damage


def _index_field_rewritten(data: Path, s: int) -> tuple[int, str]:
    rewrite_index_field(data, 5, 6)
    return 5, "its record holds entry 6"


def _swapped(data: Path, s: int) -> tuple[int, str]:
    swap_records(data, 5, 6)
    return 5, "its record holds entry 6"


def _duplicated(data: Path, s: int) -> tuple[int, str]:
    duplicate_record(data, 3)
    return 4, "its record holds entry 3"


def _altered_after_snapshot(data: Path, s: int) -> tuple[int, str]:
    alter_entry(data, s + 1)  # its successor's prev no longer matches it
    return s + 2, "it, or the one before it, was altered"


def _swapped_after_snapshot(data: Path, s: int) -> tuple[int, str]:
    swap_records(data, s + 1, s + 2)
    return s + 1, f"its record holds entry {s + 2}"


def _duplicated_after_snapshot(data: Path, s: int) -> tuple[int, str]:
    append_copy_of_last(data)
    return s + CRASHED, f"its record holds entry {s + CRASHED - 1}"


ENTRY_DAMAGE: dict[str, tuple[Damage, bool]] = {  # damage, after the snapshot?
    # Before the snapshot: caught by the log digest on open, named by the leaf hashes.
    "altered_entry_recomputed_checksum": (_altered(3), False),
    "altered_genesis": (_altered(0), False),
    "index_field_rewritten": (_index_field_rewritten, False),
    "swapped_records": (_swapped, False),
    "duplicated_record": (_duplicated, False),
    # After the snapshot (a crash left them there): caught by the re-check of the chain.
    "altered_entry_after_snapshot": (_altered_after_snapshot, True),
    "swapped_records_after_snapshot": (_swapped_after_snapshot, True),
    "duplicated_last_record_after_snapshot": (_duplicated_after_snapshot, True),
}


@pytest.mark.parametrize("case", list(ENTRY_DAMAGE.values()), ids=list(ENTRY_DAMAGE))
def test_store_damage_is_detected(
    case: tuple[Damage, bool], pristine: Registry, crashed: Registry, tmp_path: Path
) -> None:
    damage, after_snapshot = case
    data = (crashed if after_snapshot else pristine).copy(tmp_path / "data")
    index, says = damage(data, pristine.size)
    checkpoint = (data / "checkpoint").read_bytes()
    with pytest.raises(DamagedEntryError) as caught:
        open_ledger(data)
    message = str(caught.value)
    assert caught.value.index == index, message
    assert message.startswith(f"entry {index}: ") and says in message, message
    assert f"restore the data directory from a backup that holds entry {index}" in message
    assert (data / "checkpoint").read_bytes() == checkpoint  # nothing signed over it
    with pytest.raises(DamagedEntryError):  # the LOCK was released: it can be opened again
        open_ledger(data)


def test_entry_damaged_under_a_running_ledger_is_never_served(
    pristine: Registry, tmp_path: Path
) -> None:
    data = pristine.copy(tmp_path / "data")
    ledger = open_ledger(data)
    try:
        assert len(ledger.entries_bytes(0, 100)) == pristine.size
        alter_in_place(data, 3)
        for read in (
            lambda: ledger.entries_bytes(0, 100),
            lambda: ledger.entries_bytes(3, 1),
            lambda: ledger.entry_bytes(3),
            lambda: ledger.entry(3),
        ):
            with pytest.raises(DamagedEntryError, match=r"^entry 3: its bytes were altered"):
                read()
        assert ledger.entries_bytes(4, 100) == records(pristine.data)[4:]  # the rest is served
    finally:
        ledger.close()


# ---- damage to the snapshot


def _edit_manifest(data: Path) -> None:
    path = snapshot_dir(data) / "manifest.json"
    path.write_text(path.read_text().replace('"size": ', '"size": 1', 1))


SNAPSHOT_DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "edited_state_researcher_made_admin": (
        lambda data: make_admin(data, "alice"),
        "state.json does not match the digest its manifest recorded",
    ),
    "flipped_tree_byte": (
        lambda data: flip_byte(snapshot_dir(data) / "tree.bin", 100),
        "tree.bin does not match the digest its manifest recorded",
    ),
    "flipped_id_index_byte": (
        lambda data: flip_byte(snapshot_dir(data) / "ids.idx", 20),
        "ids.idx does not match the digest its manifest recorded",
    ),
    "edited_manifest": (_edit_manifest, "manifest.json does not match its own digest"),
    "forged_manifest_log_digest": (
        lambda data: forge_manifest(data, log_sha256="0" * 64),
        "though every entry still hashes to its leaf",
    ),
    "forged_manifest_root": (
        lambda data: forge_manifest(data, root="0" * 64),
        "tree.bin's root is",
    ),
    "old_format_without_manifest": (
        lambda data: (snapshot_dir(data) / "manifest.json").unlink(),
        "it has no manifest.json (an older format, without digests of its files)",
    ),
}


@pytest.mark.parametrize("case", list(SNAPSHOT_DAMAGE.values()), ids=list(SNAPSHOT_DAMAGE))
def test_damaged_snapshot_is_never_loaded(
    case: tuple[Callable[[Path], None], str],
    pristine: Registry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    damage, says = case
    data = pristine.copy(tmp_path / "data")
    root = verify_ledger(records(data)).tree.root()
    damage(data)
    with caplog.at_level(logging.WARNING):
        ledger = open_ledger(data)
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(says in w and "rebuilding the state from the log" in w for w in warnings), (
            warnings
        )
        assert (ledger.size, ledger.root()) == (pristine.size, root)
        alice = ledger.member_for_key(pristine.world.keys["alice"].key_id)
        assert alice is not None and alice.role is Role.RESEARCHER
        # The edited state grants nothing: an admin-only event by the researcher is refused.
        admin_only = Member(
            action=MemberAction.ADD,
            name="mallory",
            role=Role.ADMIN,
            public_key=SigningKey.generate().public.b64(),
        )
        with pytest.raises(RuleViolation, match="alice"):
            ledger.append(signed(pristine.world, "alice", admin_only))
        assert ledger.size == pristine.size
    finally:
        ledger.close()
    rebuilt = read_snapshot(data)  # the open replaced the damaged snapshot with a sound one
    assert rebuilt is not None and rebuilt.size == pristine.size


# ---- a torn tail, and blobs


@pytest.mark.parametrize("after_crash", [False, True], ids=["after_clean_stop", "after_crash"])
def test_torn_tail_still_recovers(
    after_crash: bool, pristine: Registry, crashed: Registry, tmp_path: Path
) -> None:
    base = crashed if after_crash else pristine
    data = base.copy(tmp_path / "data")
    tear_tail(data)
    ledger = open_ledger(data)
    try:
        assert ledger.size == base.size  # every acknowledged entry, nothing of the torn one
        assert ledger.entries_bytes(0, 1000) == records(base.data)
    finally:
        ledger.close()


BLOB_DAMAGE: dict[str, tuple[Callable[[Registry, Path], None], str, str]] = {
    "flipped_output_byte": (
        lambda reg, data: flip_byte(blob_path(data, reg.output_blob), 3),
        "output_blob",
        "damaged, stored bytes hash to",
    ),
    "deleted_log": (
        lambda reg, data: blob_path(data, reg.log_blob).unlink(),
        "log_blob",
        "missing",
    ),
    "flipped_config_byte": (
        lambda reg, data: flip_byte(blob_path(data, reg.config_blob)),
        "config_blob",
        "damaged, stored bytes hash to",
    ),
}


@pytest.mark.parametrize("case", list(BLOB_DAMAGE.values()), ids=list(BLOB_DAMAGE))
def test_blob_damage_is_named_by_the_entry_that_names_it(
    case: tuple[Callable[[Registry, Path], None], str, str], pristine: Registry, tmp_path: Path
) -> None:
    damage, which, says = case
    data = pristine.copy(tmp_path / "data")
    damage(pristine, data)
    sha256 = getattr(pristine, which)
    ledger = open_ledger(data)
    try:
        found = check_blobs(records(data), ledger.blobs)
        if says != "missing":
            with pytest.raises(DamagedBlobError, match=f"^blob {sha256}: stored bytes hash to"):
                ledger.blobs.open_verified(sha256)
    finally:
        ledger.close()
    assert found.checked == 3  # config, output, log; the output delivered to site-b is not ours
    (finding,) = found.findings
    index = pristine.config_task if which == "config_blob" else pristine.result
    where = {
        "config_blob": "task.body.config_blob",
        "output_blob": "result.body.outputs[0] (out.json)",
        "log_blob": "result.body.log",
    }[which]
    assert (finding.index, finding.where, finding.sha256) == (index, where, sha256)
    assert finding.problem.startswith(says)
    assert str(finding).startswith(f"entry {index}: {where} names blob {sha256}: {says}")


def test_intact_store_passes_every_check(pristine: Registry, tmp_path: Path) -> None:
    data = pristine.copy(tmp_path / "data")
    ledger = open_ledger(data)
    try:
        assert check_blobs(records(data), ledger.blobs).findings == ()
        assert not ledger.blobs.exists(pristine.delivered)  # legitimately absent
        assert ledger.entries_bytes(0, 1000) == records(pristine.data)
    finally:
        ledger.close()


def test_emptied_log_under_a_signed_checkpoint_never_opens_as_a_new_ledger(
    pristine: Registry, tmp_path: Path
) -> None:
    """The log and the snapshot lost, the signed checkpoint left: opening must not start a fresh
    ledger (which would then take a new genesis at index 0)."""
    data = pristine.copy(tmp_path / "data")
    (data / "entries.log").write_bytes(b"")
    (data / "entries.idx").unlink(missing_ok=True)
    shutil.rmtree(data / "snapshots", ignore_errors=True)
    (data / "SNAPSHOT").unlink(missing_ok=True)
    with pytest.raises(CorruptStoreError, match="holds no entry"):
        open_ledger(data)
