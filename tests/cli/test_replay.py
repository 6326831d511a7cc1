"""The CLI's verified replay is saved between commands: each verifies only what is new, and a
registry that now serves less than was verified before is caught (its lie is named)."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.client.registry import Page
from cli.replay import replay_for
from ledger.errors import RollbackError
from tests.fake_registry import FakeRegistry, history, note_for

HONEST = history(8).entries


class CountingRegistry(FakeRegistry):
    def __init__(self) -> None:
        super().__init__()
        self.starts: list[int] = []

    def entries(self, start: int = 0, limit: int = 100, *, wait: int = 0) -> Page:
        self.starts.append(start)
        return super().entries(start, limit, wait=wait)


def _replay(registry: FakeRegistry, home: Path):  # type: ignore[no-untyped-def]
    return replay_for(
        registry,  # type: ignore[arg-type]
        home,
        log_key=HONEST[0].event.event.body.log_key,  # type: ignore[union-attr]
        genesis=HONEST[0].hash,
    )


def test_each_command_verifies_only_what_is_new(tmp_path: Path) -> None:
    registry = CountingRegistry()
    registry.serve(HONEST[:5], note_for(HONEST[:5]))
    assert _replay(registry, tmp_path).sync().size == 5
    registry.serve(HONEST, note_for(HONEST))
    registry.starts.clear()
    assert _replay(registry, tmp_path).sync().size == 8  # a later command
    assert min(registry.starts) == 5  # nothing below what was verified before is fetched


def test_a_registry_that_now_serves_less_is_caught(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.serve(HONEST, note_for(HONEST))
    _replay(registry, tmp_path).sync()
    registry.serve(HONEST[:4], note_for(HONEST[:4]))
    with pytest.raises(RollbackError):
        _replay(registry, tmp_path).sync()
