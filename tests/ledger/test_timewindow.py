"""The time window an appended event's ``time`` must lie in, around the registry's clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ledger.bodies import Task
from ledger.errors import EventTimeError
from ledger.store.ledger import Ledger
from ledger.timewindow import DEFAULT_TIME_WINDOW, TimeWindow
from tests.ledger.factory import World

NOW = "2026-11-25T17:00:00.000000Z"


@pytest.mark.parametrize(
    ("event_time", "side"),
    [
        ("9999-12-31T23:59:59.999999Z", "ahead of"),
        ("0001-01-01T00:00:00Z", "behind"),
        ("2026-11-25T17:10:00.000001Z", "ahead of"),
        ("2026-11-24T16:59:59.999999Z", "behind"),
    ],
    ids=["year_9999", "year_0001", "a_microsecond_past_ten_minutes", "a_microsecond_past_a_day"],
)
def test_window_refuses_times_outside_it_naming_both_times(event_time: str, side: str) -> None:
    with pytest.raises(EventTimeError) as caught:
        DEFAULT_TIME_WINDOW.check(event_time, NOW)
    message = str(caught.value)
    assert event_time in message and f"{side} the registry's time {NOW}" in message
    assert "from 1 day before to 10 minutes after its time" in message


@pytest.mark.parametrize(
    "event_time", ["2026-11-25T17:10:00Z", "2026-11-24T17:00:00Z", NOW, "2026-11-25T17:00:00Z"]
)
def test_window_admits_times_inside_it_edges_included(event_time: str) -> None:
    DEFAULT_TIME_WINDOW.check(event_time, NOW)


@pytest.mark.parametrize(
    ("now", "event_time"),
    [
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),
    ],
    ids=["registry_in_year_1", "registry_in_year_9999"],
)
def test_window_at_the_ends_of_the_calendar_does_not_overflow(now: str, event_time: str) -> None:
    DEFAULT_TIME_WINDOW.check(now, now)  # now + 10 minutes would lie past the year 9999
    wide = TimeWindow(past=timedelta(days=1000), future=timedelta(days=1000))
    with pytest.raises(EventTimeError):
        wide.check(event_time, now)


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        TimeWindow(future=timedelta(seconds=-1))


def test_ledger_window_is_configurable_and_can_be_turned_off(tmp_path: Path) -> None:
    world = World()
    genesis = world.sign("admin", world.genesis_body())
    old = World(start=world.start - timedelta(days=30))
    task = old.sign("alice", Task(image="busybox:1", sites=("site-a",), config={}))
    strict = Ledger.create(
        tmp_path / "strict",
        genesis=genesis,
        log_key=world.log_key,
        time_window=TimeWindow(past=timedelta(days=7)),
    )
    with pytest.raises(EventTimeError, match="30 days behind"):
        strict.append(task)
    assert strict.size == 1
    strict.close()
    lax = Ledger.create(tmp_path / "lax", genesis=genesis, log_key=world.log_key, time_window=None)
    assert lax.append(task).created
    lax.close()
