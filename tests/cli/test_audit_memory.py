"""``pht audit`` remembers what it verified of each registry, keyed by the registry, not by what
it serves: a registry that swaps its whole history, rolls back or hides entries behind a 416 is
caught on the next audit (exit 3, evidence kept), and an honest one passes again and again."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import audit as audit_cli
from cli.profile import Connection
from tests.fake_registry import FakeRegistry, history, note_for
from tests.ledger.factory import key

HONEST = history(8).entries
OTHER = history(8, consortium="Another consortium").entries


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(
        audit_cli,
        "connect",
        lambda args: Connection(fake, key("audrey"), None),  # type: ignore[arg-type]
    )
    return fake


def _audit(state: Path) -> int:
    args = argparse.Namespace(
        data=None,
        store=None,
        registry="http://registry.invalid",
        key=None,
        json=True,
        workers=1,
        genesis=None,
        state=state,
        cache_tiles=False,
    )
    return audit_cli.run(args)


def _evidence(state: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in state.glob("*/evidence/*"))


@pytest.mark.parametrize(
    ("name", "served"),
    [
        ("whole_history_swapped_for_another_genesis", (OTHER, note_for(OTHER))),
        ("rollback", (HONEST[:3], note_for(HONEST[:3]))),
        ("entries_withheld_under_the_checkpoint", (HONEST[:6], note_for(HONEST))),
    ],
)
def test_audit_catches_a_registry_that_changed_since_the_last_audit(
    registry: FakeRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    served: tuple[list, bytes],
) -> None:
    registry.serve(HONEST[:5], note_for(HONEST[:5]))
    assert _audit(tmp_path) == 0
    registry.serve(*served)
    assert _audit(tmp_path) == 3
    assert "THE REGISTRY CANNOT BE TRUSTED" in capsys.readouterr().err
    expected = {
        "whole_history_swapped_for_another_genesis": "GenesisMismatchError",
        "rollback": "RollbackError",
        "entries_withheld_under_the_checkpoint": "WithheldEntriesError",
    }[name]
    assert _evidence(tmp_path) == [expected]


def test_audit_of_an_honest_growing_registry_passes_each_time(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    for size in (3, 5, 8, 8):
        registry.serve(HONEST[:size], note_for(HONEST[:size]))
        assert _audit(tmp_path) == 0
    assert _evidence(tmp_path) == []


def test_a_checkpoint_claiming_more_than_the_log_key_signed_is_refused_before_fetching(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    registry.serve(HONEST, note_for(HONEST, signer=key("mallory")))
    assert _audit(tmp_path) == 3
    assert _evidence(tmp_path) == ["ForeignCheckpointError"]
