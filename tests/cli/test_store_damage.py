"""``pht serve`` and ``pht audit`` on a damaged data directory.

Each case copies one real registry's data directory (see :mod:`tests.ledger.damage`), damages the
copy while the registry is stopped (or, for the per-read check, while it runs), and starts
``pht serve`` as a process: it refuses to start on damage to entries it signed, naming the entry
and how to recover; it answers ``store-damaged`` (naming the entry or blob, with an error log line)
instead of serving damaged bytes; an edited snapshot grants nothing. ``pht audit --data`` names
every missing or damaged blob by the entry and field that name it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from api.client.registry import Client
from api.errors import NotFoundError, RuleViolationError, ServerError
from cli.main import main
from crypto import SigningKey
from ledger.bodies import Member, MemberAction, Role
from tests.api.registry_process import RegistryProcess
from tests.ledger.damage import (
    Registry,
    alter_entry,
    alter_in_place,
    blob_path,
    build_registry,
    duplicate_record,
    flip_byte,
    make_admin,
    signed,
    swap_records,
)
from tests.ledger.factory import World

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return build_registry(tmp_path_factory.mktemp("registry"), World())


SERVE_REFUSES: dict[str, tuple[Callable[[Path], None], int, str]] = {
    "altered_entry_recomputed_checksum": (
        lambda data: alter_entry(data, 3),
        3,
        "its bytes were altered",
    ),
    "swapped_records": (lambda data: swap_records(data, 5, 6), 5, "its record holds entry 6"),
    "duplicated_record": (
        lambda data: duplicate_record(data, 3),
        4,
        "its record holds entry 3",
    ),
}


@pytest.mark.parametrize("case", list(SERVE_REFUSES.values()), ids=list(SERVE_REFUSES))
def test_serve_refuses_to_start_on_damaged_store(
    case: tuple[Callable[[Path], None], int, str], pristine: Registry, tmp_path: Path
) -> None:
    damage, index, says = case
    data = pristine.copy(tmp_path / "data")
    damage(data)
    served = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--data", str(data), "--port", "0"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert served.returncode == 1, served.stderr
    assert "listening on" not in served.stdout
    assert f"pht: error: entry {index}: {says}" in served.stderr
    assert f"restore the data directory from a backup that holds entry {index}" in served.stderr


def test_entry_damaged_while_serving_is_never_served(pristine: Registry, tmp_path: Path) -> None:
    data = pristine.copy(tmp_path / "data")
    registry = RegistryProcess(data)
    url = registry.start()
    try:
        alter_in_place(data, 3)
        with Client(url, pristine.world.keys["site-a"]) as site:
            for read in (lambda: site.entry_records(0, 100), lambda: site.entry(3)):
                with pytest.raises(ServerError) as caught:
                    read()
                assert (caught.value.status, caught.value.slug) == (500, "store-damaged")
                assert caught.value.detail == "entry 3 is damaged in the registry's store"
            assert len(site.entry_records(4, 100)[0]) == pristine.size - 4  # the rest is served
    finally:
        registry.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "store damaged, not served: entry 3: its bytes were altered" in log


BLOBS: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "flipped_output_byte": (lambda data, sha: flip_byte(blob_path(data, sha), 5), "output_blob"),
    "deleted_log": (lambda data, sha: blob_path(data, sha).unlink(), "log_blob"),
}


@pytest.mark.parametrize("case", list(BLOBS.values()), ids=list(BLOBS))
def test_damaged_blob_is_never_served(
    case: tuple[Callable[[Path, str], None], str], pristine: Registry, tmp_path: Path
) -> None:
    damage, which = case
    sha256 = getattr(pristine, which)
    data = pristine.copy(tmp_path / "data")
    damage(data, sha256)
    registry = RegistryProcess(data)
    url = registry.start()
    try:
        with Client(url, pristine.world.keys["alice"]) as alice:
            if which == "log_blob":
                with pytest.raises(NotFoundError):  # a missing blob stays 404
                    alice.get_blob(sha256)
            else:
                with pytest.raises(ServerError) as caught:
                    alice.get_blob(sha256)
                assert (caught.value.status, caught.value.slug) == (500, "store-damaged")
                assert caught.value.detail == f"blob {sha256} is damaged in the registry's store"
            assert alice.get_blob(pristine.config_blob) == b'{"rounds": 3}'
    finally:
        registry.stop()
    if which == "output_blob":
        log = (tmp_path / "serve.log").read_text()
        assert f"store damaged, not served: blob {sha256}: stored bytes hash to" in log


def test_edited_snapshot_grants_the_researcher_nothing(pristine: Registry, tmp_path: Path) -> None:
    data = pristine.copy(tmp_path / "data")
    make_admin(data, "alice")
    registry = RegistryProcess(data)
    url = registry.start()
    try:
        with Client(url, pristine.world.keys["alice"]) as alice:
            admin_only = Member(
                action=MemberAction.ADD,
                name="mallory",
                role=Role.ADMIN,
                public_key=SigningKey.generate().public.b64(),
            )
            with pytest.raises(RuleViolationError, match="alice"):
                alice.post_event(signed(pristine.world, "alice", admin_only))
            assert alice.entries(0, limit=1000).size == pristine.size  # nothing appended, signed
    finally:
        registry.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "state.json does not match the digest its manifest recorded" in log
    assert "rebuilding the state from the log" in log


AUDITED: dict[str, tuple[Callable[[Path, Registry], None], str, str, str]] = {
    # damage, which blob, the field naming it, what is wrong
    "flipped_output_byte": (
        lambda data, reg: flip_byte(blob_path(data, reg.output_blob)),
        "output_blob",
        "result.body.outputs[0] (out.json)",
        "damaged, stored bytes hash to",
    ),
    "deleted_log": (
        lambda data, reg: blob_path(data, reg.log_blob).unlink(),
        "log_blob",
        "result.body.log",
        "missing",
    ),
    "deleted_config_blob": (
        lambda data, reg: blob_path(data, reg.config_blob).unlink(),
        "config_blob",
        "task.body.config_blob",
        "missing",
    ),
}


@pytest.mark.parametrize("case", list(AUDITED.values()), ids=list(AUDITED))
def test_audit_names_missing_and_damaged_blobs(
    case: tuple[Callable[[Path, Registry], None], str, str, str],
    pristine: Registry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    damage, which, where, problem = case
    data = pristine.copy(tmp_path / "data")
    damage(data, pristine)
    index = pristine.config_task if which == "config_blob" else pristine.result
    code = main(["-q", "audit", "--data", str(data), "--state", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 2, err
    sha256 = getattr(pristine, which)
    assert f"entry {index}: {where} names blob {sha256}: {problem}" in err
    assert "1 blob references name blobs the data directory does not hold whole" in err


def test_audit_of_an_intact_store_passes_without_the_delivered_output(
    pristine: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pristine.copy(tmp_path / "data")
    code = main(["-q", "audit", "--data", str(data), "--state", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "blobs: all 3 the ledger names are stored whole" in err
    assert pristine.delivered not in err
