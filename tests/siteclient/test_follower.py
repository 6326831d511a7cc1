"""The follower's own failure modes, against the in-process registry: what is not a lie must
never be reported as one, and every lie keeps its own evidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.errors import TransportError
from ledger.errors import HistoryRewrittenError
from siteclient.errors import ForkDetectedError, StateError
from siteclient.follow.follower import Follower
from siteclient.follow.state import LEAVES, TrustStore
from tests.fake_registry import FakeRegistry, history, note_for

HONEST = history(8).entries
FORK = history(8, fork_at=3).entries


class FlakyRegistry(FakeRegistry):
    """Fails the next ``failures`` checkpoint fetches as a network would."""

    failures = 0

    def checkpoint(self) -> bytes:
        if self.failures:
            self.failures -= 1
            raise TransportError("connection reset")
        return super().checkpoint()


def _follower(tmp_path: Path, registry: FakeRegistry) -> Follower:
    return Follower(registry, TrustStore(tmp_path / "state"), log_key=None, genesis=None)  # type: ignore[arg-type]


def test_network_failure_between_page_and_checkpoint_is_not_a_fork(tmp_path: Path) -> None:
    registry = FlakyRegistry()
    registry.serve(HONEST[:5], note_for(HONEST[:5]))
    follower = _follower(tmp_path, registry)
    follower.sync()
    registry.serve(HONEST, note_for(HONEST))
    registry.failures = 1
    with pytest.raises(TransportError):
        follower.sync()  # entries 5..7 were staged, then the checkpoint fetch failed
    assert follower.sync().size == 8  # the retry starts again from what was verified
    assert not (tmp_path / "state" / "evidence").exists()


def test_damaged_local_state_is_the_sites_fault_not_the_registrys(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.serve(HONEST, note_for(HONEST))
    _follower(tmp_path, registry).sync()
    leaves = tmp_path / "state" / LEAVES
    raw = bytearray(leaves.read_bytes())
    raw[40] ^= 1
    leaves.write_bytes(bytes(raw))
    with pytest.raises(StateError, match="does not match the saved checkpoint"):
        _follower(tmp_path, registry)


def test_entry_served_again_in_another_version_is_a_rewritten_history(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.serve(HONEST, note_for(HONEST))
    follower = _follower(tmp_path, registry)
    follower.sync()
    assert follower.entry(4) == HONEST[4]
    registry.serve(FORK, note_for(HONEST))  # same checkpoint, another entry 4 behind it
    with pytest.raises(ForkDetectedError) as caught:
        follower.entry(4)
    assert isinstance(caught.value.__cause__, HistoryRewrittenError)
    (folder,) = (tmp_path / "state" / "evidence").iterdir()
    assert (folder / "entry.json").read_bytes() == FORK[4].canonical


def test_each_lie_keeps_its_own_evidence(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.serve(HONEST[:5], note_for(HONEST[:5]))
    _follower(tmp_path, registry).sync()
    registry.serve(HONEST[:3], note_for(HONEST[:3]))  # a rollback, caught twice (two restarts)
    for _ in range(2):
        with pytest.raises(ForkDetectedError):
            _follower(tmp_path, registry).sync()
    folders = sorted(p.name for p in (tmp_path / "state" / "evidence").iterdir())
    assert folders == ["RollbackError-at-5", "RollbackError-at-5-2"]
