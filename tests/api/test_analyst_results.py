"""The Analyst reads results from its own verified replay, never from the registry's read model:
a task view that names another site's entry, or a result the signed log does not hold, is
refused; an honest view gives each site's own signed result."""

from __future__ import annotations

import pytest

from api.client.analyst import Analyst
from api.client.answers import SiteState, TaskView
from api.errors import AnalysisError
from ledger.bodies import Result, ResultState, Task
from tests.fake_registry import FakeRegistry, note_for
from tests.ledger.factory import World, key


def _ledger() -> tuple[World, int]:
    """A task for site-a and site-b, and only site-a's result; returns the world and the
    result's index."""
    world = World()
    world.push(world.sign("admin", world.genesis_body()))
    task = world.push(
        world.sign("alice", Task(image="myconsortium/avg:1", sites=("site-a", "site-b"), config={}))
    )
    done = Result(task=task.event.event.id, state=ResultState.COMPLETED, outputs=())
    return world, world.push(world.sign("site-a", done)).index


def _view(world: World, sites: dict[str, SiteState]) -> TaskView:
    return TaskView(task=world.entries[1], sites=sites, cancelled=None)


def _analyst(world: World) -> Analyst:
    registry = FakeRegistry()
    registry.serve(world.entries, note_for(world.entries))
    return Analyst(registry, key("alice"), genesis=world.entries[0].hash)  # type: ignore[arg-type]


def test_honest_view_gives_each_sites_own_signed_result() -> None:
    world, index = _ledger()
    honest = {
        "site-a": SiteState(state="completed", index=index, finished=True),
        "site-b": SiteState(state="pending", index=None, finished=False),
    }
    results = _analyst(world).results(_view(world, honest))
    assert list(results) == ["site-a"] and results["site-a"].entry == world.entries[index]


def test_read_model_naming_another_sites_entry_is_refused() -> None:
    world, index = _ledger()
    lying = {
        "site-a": SiteState(state="completed", index=index, finished=True),
        "site-b": SiteState(state="completed", index=index, finished=True),  # site-a's entry
    }
    with pytest.raises(AnalysisError, match=r"\['site-b'\] finished"):
        _analyst(world).results(_view(world, lying))
