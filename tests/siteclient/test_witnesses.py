"""Sites as witnesses (DESIGN 12), against a registry that shows different histories to different
sites (a test double serving real signed data, :class:`tests.fake_registry.FakeRegistry`; the
fakes of one registry share the cosignatures it collected and append all of them to every
cosigned note, the strongest thing such a registry can do)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from ledger.bodies import Task, WitnessPolicySet
from ledger.events import Entry
from ledger.view import View
from siteclient.errors import ForkDetectedError, WitnessWaitError
from siteclient.follow.follower import Follower
from siteclient.follow.state import TrustStore
from siteclient.follow.witness import WITNESS_FILE, Witness
from tests.fake_registry import FakeRegistry, note_for
from tests.ledger.factory import World

SITES = ("site-a", "site-b", "site-c")
T = 1_800_000_000


def witnessed_history(branch: str, tasks: int) -> list[Entry]:
    """Genesis (the sites publish witness keys), a policy of 2 of the 3 sites, then ``tasks``
    tasks of ``branch``: histories of different branches share their first two entries."""
    world = World(witnesses=True)
    world.push(world.sign("admin", world.genesis_body()))
    world.push(world.sign("admin", WitnessPolicySet(policy=world.witness_policy(SITES, 2))))
    for n in range(tasks):
        sites = ("site-c",) if branch == "minority" else ("site-a", "site-b")
        body = Task(image="myconsortium/avg:1", sites=sites, config={"branch": branch, "n": n})
        world.push(world.sign("alice", body))
    return world.entries


class Site:
    def __init__(self, name: str, registry: FakeRegistry, state: Path) -> None:
        self.name = name
        self.registry = registry
        self.store = TrustStore(state / name)
        self.witness = Witness(
            registry, World.witness_signer(name), name=name, store=self.store, clock=lambda: T
        )
        self.acted: list[View] = []
        self.follower = Follower(
            registry,
            self.store,
            log_key=None,
            genesis=None,
            witness=self.witness,
            sleep=lambda seconds: None,
            patience=0,
        )

    def sync(self) -> View:
        return self.follower.sync(0, act=self.acted.append)


def serve(registry: FakeRegistry, entries: list[Entry]) -> None:
    registry.serve(entries, note_for(entries))


@pytest.fixture
def sites(tmp_path: Path) -> dict[str, Site]:
    pool: list[str] = []  # one registry: every cosignature it was sent
    base = witnessed_history("base", 0)
    out = {}
    for name in SITES:
        registry = FakeRegistry(pool=pool)
        serve(registry, base)
        out[name] = Site(name, registry, tmp_path)
    # The checkpoint covering the policy needs its quorum already: the first witness waits.
    with pytest.raises(WitnessWaitError, match="1 of 2"):
        out["site-a"].sync()
    out["site-b"].sync()
    for site in out.values():
        assert site.sync().size == 2
    return out


def test_split_view_the_minority_never_reaches_quorum_and_runs_nothing(
    sites: dict[str, Site], caplog: pytest.LogCaptureFixture
) -> None:
    majority, minority = witnessed_history("majority", 2), witnessed_history("minority", 2)
    assert majority[:2] == minority[:2] and majority[2] != minority[2]
    serve(sites["site-a"].registry, majority)
    serve(sites["site-b"].registry, majority)
    serve(sites["site-c"].registry, minority)

    caplog.set_level(logging.INFO, logger="siteclient.follow.follower")
    assert sites["site-a"].sync().size == 2  # only its own cosignature so far: it waits
    assert "waiting for witnesses: 1 of 2" in caplog.text
    assert sites["site-b"].sync().size == 4
    assert sites["site-a"].sync().size == 4
    for _ in range(3):
        view = sites["site-c"].sync()
        assert view.size == 2 and not view.fresh
    # Its own cosignature, and those of a and b (over the other history), are all in the note
    # it is served, and still the quorum is not met: nothing of the minority view was acted on.
    minority_task = minority[2].event.event.id
    assert all(minority_task not in v.tasks and v.size <= 2 for v in sites["site-c"].acted)
    assert sites["site-c"].follower.view is not None
    assert minority_task not in sites["site-c"].follower.view.tasks
    assert "has not reached its witness quorum" in caplog.text  # reported (patience 0)
    assert majority[2].event.event.id in sites["site-a"].follower.view.tasks  # type: ignore[union-attr]


def test_a_witness_shown_a_history_inconsistent_with_what_it_cosigned_refuses_and_keeps_evidence(
    sites: dict[str, Site],
) -> None:
    site = sites["site-a"]
    majority = witnessed_history("majority", 2)
    for name in ("site-a", "site-b"):
        serve(sites[name].registry, majority)
    sites["site-a"].sync()
    sites["site-b"].sync()
    assert site.witness.cosigned_size == 4
    posted = list(site.registry.posted)
    serve(site.registry, witnessed_history("minority", 3))  # a fork, larger: needs a proof
    with pytest.raises(ForkDetectedError, match="witness refuses to cosign"):
        site.sync()
    assert site.registry.posted == posted  # nothing cosigned
    evidence = list((site.store.dir / "evidence").iterdir())
    assert len(evidence) == 1 and (evidence[0] / "served-checkpoint.txt").exists()
    assert (evidence[0] / "trusted-checkpoint.txt").read_bytes() == note_for(majority)


def test_a_witness_killed_between_deciding_and_sending_never_cosigns_a_fork_after_restart(
    tmp_path: Path,
) -> None:
    base, majority = witnessed_history("base", 0), witnessed_history("majority", 2)
    registry = FakeRegistry()
    serve(registry, majority)
    store = TrustStore(tmp_path / "site-a")
    pid = os.fork()
    if pid == 0:  # the witness decides, and is killed as it sends
        try:

            class Dying(FakeRegistry):
                def post_cosignature(self, size: int, line: str) -> bool:
                    os._exit(9)

            dying = Dying()
            serve(dying, majority)
            witness = Witness(dying, World.witness_signer("site-a"), name="site-a", store=store)
            witness.observe(log_key=_log_key(base), origin=base[0].event.event.ledger)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9
    assert (store.dir / WITNESS_FILE).exists()

    restarted = Witness(registry, World.witness_signer("site-a"), name="site-a", store=store)
    assert restarted.cosigned_size == 4
    serve(registry, witnessed_history("minority", 2))  # the same size, another root
    with pytest.raises(ForkDetectedError):
        restarted.observe(log_key=_log_key(base), origin=base[0].event.event.ledger)
    serve(registry, witnessed_history("minority", 5))  # larger, not an extension
    with pytest.raises(ForkDetectedError):
        restarted.observe(log_key=_log_key(base), origin=base[0].event.event.ledger)
    assert registry.posted == []
    # Shown the history it decided on, it sends the line it kept (the same line, once).
    serve(registry, majority)
    assert restarted.observe(log_key=_log_key(base), origin=base[0].event.event.ledger) is None
    assert len(registry.posted) == 1 and registry.posted[0][0] == 4


def _log_key(entries: list[Entry]) -> str:
    body = entries[0].event.event.body
    return body.log_key  # type: ignore[union-attr]
