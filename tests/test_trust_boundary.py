"""The trust boundary, in process: one table of registry lies, run against every reader.

Each attack is what a registry serves after a reader trusted an honest history of 5 entries (or,
for a genesis attack, to a reader that only pinned the genesis). The readers are the site's
follower, ``pht audit`` (its fetch and :func:`ledger.audit.audit`) and the Analyst; all decide
through :mod:`ledger.trust`, so each lie must end as the same named error in each, except where a
reader cannot observe it, which the table says and why. A valid growing log must raise nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.client.analyst import Analyst
from cli.audit import _pages, _records, _signed
from ledger.audit import audit
from ledger.checkpoint import unverified_size
from ledger.errors import (
    ConsistencyProofError,
    ForbiddenEntryError,
    ForeignCheckpointError,
    GenesisMismatchError,
    HistoryRewrittenError,
    LargerForkError,
    RollbackError,
    SameSizeForkError,
    UnsignedEntriesError,
    UntrustedLogError,
    VerificationError,
    WithheldEntriesError,
)
from ledger.events import Entry
from siteclient.errors import ForkDetectedError
from siteclient.follow.follower import Follower
from siteclient.follow.state import TrustStore
from tests.fake_registry import FakeRegistry, history, note_for
from tests.ledger.factory import key

HONEST = history(8).entries
FORK = history(8, fork_at=3).entries  # shares entries 0-2 with HONEST
FORBIDDEN = history(8, forbidden_at=6).entries
OTHER_GENESIS = history(8, consortium="Another consortium").entries
TRUSTED = 5

Served = tuple[list[Entry], bytes, list[bytes] | None]
NOT_SEEN = None  # the reader cannot observe this lie (the reason is in the table)


@dataclass(frozen=True)
class Attack:
    name: str
    served: Callable[[], Served]
    follower: type[Exception] | None
    audit: type[Exception] | None
    analyst: type[Exception] | None
    fresh: bool = False  # the reader trusted nothing before (pins only)


ATTACKS = [
    Attack("valid_growing_log", lambda: (HONEST, note_for(HONEST), None), None, None, None),
    Attack(
        "checkpoint_by_another_key",
        lambda: (HONEST, note_for(HONEST, signer=key("mallory")), None),
        ForeignCheckpointError,
        ForeignCheckpointError,
        ForeignCheckpointError,
    ),
    Attack(
        "checkpoint_for_another_origin",
        lambda: (HONEST, note_for(HONEST, origin="evil.example/log"), None),
        ForeignCheckpointError,
        ForeignCheckpointError,
        ForeignCheckpointError,
    ),
    Attack(
        "rollback",
        lambda: (HONEST[:3], note_for(HONEST[:3]), None),
        RollbackError,
        RollbackError,
        RollbackError,
    ),
    Attack(
        "same_size_fork",
        lambda: (FORK[:5], note_for(FORK[:5]), None),
        SameSizeForkError,
        SameSizeForkError,
        SameSizeForkError,
    ),
    # The honest entries, under a larger checkpoint that signs another history. The Analyst
    # holds no tree: for it, the same lie is a consistency proof that cannot verify.
    Attack(
        "larger_fork",
        lambda: (HONEST, note_for(FORK), None),
        LargerForkError,
        LargerForkError,
        ConsistencyProofError,
    ),
    Attack(
        "history_rewritten_below_trusted_size",
        lambda: (FORK, note_for(FORK), None),
        HistoryRewrittenError,
        HistoryRewrittenError,
        ConsistencyProofError,
    ),
    # Entries no checkpoint covers yet prove nothing (an honest registry under load serves them
    # a moment before it signs): every reader verifies up to the checkpoint and stops there.
    Attack(
        "entries_beyond_checkpoint",
        lambda: (HONEST, note_for(HONEST, 6), None),
        NOT_SEEN,
        NOT_SEEN,
        NOT_SEEN,
    ),
    # The Analyst asks only for the consistency proof, which the registry cannot give.
    Attack(
        "withheld_entries",
        lambda: (HONEST[:6], note_for(HONEST), None),
        WithheldEntriesError,
        WithheldEntriesError,
        ConsistencyProofError,
    ),
    # The auditor rebuilds the whole tree and needs no proof from the registry.
    Attack(
        "consistency_proof_that_fails",
        lambda: (HONEST, note_for(HONEST), [bytes(32)] * 3),
        ConsistencyProofError,
        NOT_SEEN,
        ConsistencyProofError,
    ),
    Attack(
        "genesis_other_than_pinned",
        lambda: (OTHER_GENESIS, note_for(OTHER_GENESIS), None),
        GenesisMismatchError,
        GenesisMismatchError,
        GenesisMismatchError,
        fresh=True,
    ),
    # The whole-ledger verifier names the entry (exit 2); the Analyst replays no entries.
    Attack(
        "entry_the_rules_forbid",
        lambda: (FORBIDDEN, note_for(FORBIDDEN), None),
        ForbiddenEntryError,
        VerificationError,
        NOT_SEEN,
    ),
]


def _registry(attack: Attack) -> FakeRegistry:
    registry = FakeRegistry()
    registry.serve(HONEST[:TRUSTED], note_for(HONEST[:TRUSTED]))
    return registry


def _expect(expected: type[Exception] | None, run: Callable[[], None]) -> Exception | None:
    if expected is None:
        run()
        return None
    with pytest.raises(expected) as caught:
        run()
    return caught.value


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_follower_against_registry_lies(attack: Attack, tmp_path: Path) -> None:
    registry = _registry(attack)
    store = TrustStore(tmp_path / "state")
    follower = Follower(registry, store, log_key=None, genesis=HONEST[0].hash)  # type: ignore[arg-type]
    if not attack.fresh:
        follower.sync()
        assert follower.size == TRUSTED
    trusted_note = registry.note if not attack.fresh else b""
    entries, note, proof = attack.served()
    registry.serve(entries, note, proof=proof)
    acted: list[int] = []

    def sync() -> None:
        follower.sync(act=lambda view: acted.append(view.size))

    if attack.follower is None:
        sync()
        covered = unverified_size(note)
        assert follower.size == covered and acted == [covered]
        return
    with pytest.raises(ForkDetectedError) as caught:
        sync()
    assert isinstance(caught.value.__cause__, attack.follower)
    assert acted == []  # nothing the lie brought was acted on...
    assert follower.size == (0 if attack.fresh else TRUSTED)
    assert TrustStore(tmp_path / "state").load().size == (0 if attack.fresh else TRUSTED)
    (folder,) = (tmp_path / "state" / "evidence").iterdir()  # ...and both are kept
    assert (folder / "served-checkpoint.txt").read_bytes() == note
    trusted_file = folder / "trusted-checkpoint.txt"
    assert trusted_file.read_bytes() == trusted_note if trusted_note else not trusted_file.exists()
    assert folder.name.startswith(attack.follower.__name__)
    assert str(caught.value.__cause__) in (folder / "reason.txt").read_text()


def _audit(registry: FakeRegistry, trusted: bytes | None) -> None:
    served = registry.checkpoint()
    size = unverified_size(served)
    pages = _pages(registry, size, lambda done: None)  # type: ignore[arg-type]
    audit(pages, checkpoint=served, trusted=trusted, genesis=HONEST[0].hash)


def _audit_tiles(registry: FakeRegistry, trusted: bytes | None) -> None:
    """As ``pht audit`` reads a registry that serves tiles: the checkpoint verified with the
    log key the served genesis names, then every bundle held to it as it arrives."""
    served = registry.checkpoint()
    try:
        checkpoint = _signed(served, registry.entry_records(0, 1)[0][0])
    except UntrustedLogError as exc:  # refused before any entry is fetched
        raise exc.with_notes(trusted=trusted or b"", served=served) from None
    chunks = _records(registry, checkpoint, lambda done: None, None)  # type: ignore[arg-type]
    audit(chunks, checkpoint=served, trusted=trusted, genesis=HONEST[0].hash)


# Read through tiles, the auditor holds what it fetches to the served checkpoint before it
# replays it: entries that are not the signed ones are named as such.
THROUGH_TILES = {"larger_fork": UnsignedEntriesError}


@pytest.mark.parametrize("tiles", [False, True], ids=["pages", "tiles"])
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_audit_against_registry_lies(attack: Attack, tiles: bool) -> None:
    registry = _registry(attack)
    registry.tiles = tiles
    read = _audit_tiles if tiles else _audit
    remembered = None
    if not attack.fresh:
        read(registry, None)
        remembered = registry.note
    entries, note, proof = attack.served()
    registry.serve(entries, note, proof=proof)
    expected = THROUGH_TILES.get(attack.name, attack.audit) if tiles else attack.audit
    error = _expect(expected, lambda: read(registry, remembered))
    if isinstance(error, UntrustedLogError):
        assert error.served == note
        assert error.trusted == (remembered or b"") or attack.fresh


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_analyst_against_registry_lies(attack: Attack) -> None:
    registry = _registry(attack)
    entries, note, proof = attack.served()
    if attack.fresh:
        registry.serve(entries, note, proof=proof)
        _expect(
            attack.analyst,
            lambda: Analyst(registry, key("alice"), genesis=HONEST[0].hash),  # type: ignore[arg-type]
        )
        return
    analyst = Analyst(registry, key("alice"), genesis=HONEST[0].hash)  # type: ignore[arg-type]
    assert analyst.checkpoint().size == TRUSTED
    registry.serve(entries, note, proof=proof)
    error = _expect(attack.analyst, analyst.checkpoint)
    if isinstance(error, UntrustedLogError):
        assert error.served == note and error.trusted == note_for(HONEST[:TRUSTED])
