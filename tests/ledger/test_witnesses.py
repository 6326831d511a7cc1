"""The pure witness parts (DESIGN 12): cosignature lines, tlog-policy text, the witness rules,
and the quorum the trust core demands before it publishes a view."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from ledger.bodies import Member, MemberAction, Role, Task, WitnessPolicySet
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import (
    cosign,
    cosigned_by,
    parse_witness_key,
    signed_message,
    verify_cosignature,
    with_cosignatures,
    witness_key,
)
from ledger.errors import (
    CosignatureError,
    FormatError,
    QuorumError,
    RuleViolation,
    WitnessPolicyError,
)
from ledger.merkle import MerkleTree
from ledger.rules import apply
from ledger.state import State
from ledger.trust import Trusted, TrustedLog
from ledger.witness_policy import parse_policy
from tests.ledger.factory import World, key

SITES = ("site-a", "site-b", "site-c")
CP = Checkpoint(origin="pht.example/test", size=7, root=bytes(range(32)))


# ---- cosignature lines ------------------------------------------------------------------------


def test_cosignature_round_trip_and_layout() -> None:
    signer = key("w")
    vkey = parse_witness_key(witness_key("w.example/1", signer.public))
    line = cosign(CP, signer, name="w.example/1", time=1_700_000_000)
    found = verify_cosignature(line, CP, vkey)
    assert (found.witness, found.time) == ("w.example/1", 1_700_000_000)
    assert signed_message(CP, 5) == b"cosignature/v1\ntime 5\n" + CP.body()
    raw = base64.b64decode(witness_key("w.example/1", signer.public).split("+")[2])
    assert raw[0] == 0x04 and raw[1:] == signer.public.raw


@pytest.mark.parametrize(
    "change",
    [
        lambda cp: dataclasses.replace(cp, size=8),
        lambda cp: dataclasses.replace(cp, root=bytes(32)),
        lambda cp: dataclasses.replace(cp, origin="another.example/log"),
    ],
    ids=["test_rejects_other_size", "test_rejects_other_root", "test_rejects_other_origin"],
)
def test_a_cosignature_verifies_only_over_its_checkpoint(change) -> None:  # type: ignore[no-untyped-def]
    signer = key("w")
    line = cosign(CP, signer, name="w", time=1)
    with pytest.raises(CosignatureError):
        verify_cosignature(line, change(CP), parse_witness_key(witness_key("w", signer.public)))


def test_a_log_key_is_not_a_witness_key() -> None:
    from ledger.checkpoint import verifier_key

    with pytest.raises(CosignatureError, match="0x04"):
        parse_witness_key(verifier_key("w", key("w").public))


def test_cosigned_by_ignores_other_keys_and_lines_that_do_not_verify() -> None:
    note = sign_checkpoint(CP, key("log"))
    good = cosign(CP, key("a"), name="a", time=1)
    forged = cosign(CP, key("mallory"), name="b", time=1)  # b's name, another key
    other = cosign(CP, key("c"), name="c", time=1)
    witnesses = {n: parse_witness_key(witness_key(n, key(n).public)) for n in ("a", "b")}
    assert cosigned_by(with_cosignatures(note, [good, forged, other]), CP, witnesses) == {"a"}


# ---- tlog-policy ------------------------------------------------------------------------------


def _policy(*lines: str) -> str:
    world = World(witnesses=True)
    head = [f"log {world.log_key_text}"] + [
        f"witness {n} {world.witness_key_text(n)}" for n in SITES
    ]
    return "\n".join(head + list(lines)) + "\n"


def test_policy_quorum_of_groups() -> None:
    policy = parse_policy(
        _policy("# two of three", "group sites 2 site-a site-b site-c", "quorum sites")
    )
    assert not policy.satisfied({"site-a"}) and policy.satisfied({"site-a", "site-c"})
    assert policy.progress({"site-b"}) == (1, 2)
    assert parse_policy(_policy("quorum none")).satisfied(set())
    nested = parse_policy(
        _policy("group ab any site-a site-b", "group all-of all ab site-c", "quorum all-of")
    )
    assert nested.satisfied({"site-b", "site-c"}) and not nested.satisfied({"site-a", "site-b"})


@pytest.mark.parametrize(
    "tail",
    [
        ["group sites 4 site-a site-b site-c", "quorum sites"],  # more than its parts
        ["group sites 2 site-a site-x", "quorum sites"],  # undefined part
        ["group g1 1 site-a", "group g2 1 site-a", "quorum g1"],  # used twice
        ["quorum nobody"],
        [],  # no quorum
        ["quorum none", "quorum none"],
        ["witness site-a " + "x+00000000+AAAA", "quorum none"],  # defined twice
        ["frobnicate", "quorum none"],
    ],
)
def test_policy_refusals(tail: list[str]) -> None:
    with pytest.raises(WitnessPolicyError):
        parse_policy(_policy(*tail))


def test_policy_without_a_log_line_is_refused() -> None:
    with pytest.raises(WitnessPolicyError, match="log"):
        parse_policy("quorum none\n")


# ---- the rules ---------------------------------------------------------------------------------


def _state(world: World) -> State:
    state = State()
    world.entries.clear()
    apply(state, world.push(world.sign("admin", world.genesis_body())))
    return state


def test_witness_policy_rules() -> None:
    world = World(witnesses=True)
    state = _state(world)
    text = world.witness_policy(SITES, 2)
    with pytest.raises(RuleViolation, match="only an admin"):
        apply(state, world.push(world.sign("alice", WitnessPolicySet(policy=text))))
    world.entries.pop()
    with pytest.raises(RuleViolation, match="is not an active member"):
        bad = world.witness_policy(("site-a", "audrey-w"), 1)
        apply(state, world.push(world.sign("admin", WitnessPolicySet(policy=bad))))
    world.entries.pop()
    other = text.replace(
        world.witness_key_text("site-c"), witness_key("site-c", key("mallory").public)
    )
    with pytest.raises(RuleViolation, match="is not the witness key"):
        apply(state, world.push(world.sign("admin", WitnessPolicySet(policy=other))))
    world.entries.pop()
    apply(state, world.push(world.sign("admin", WitnessPolicySet(policy=text))))
    assert state.witness_policy == text
    assert State.from_dict(state.to_dict()).witness_policy == text


def test_a_witness_key_is_never_the_signing_key_and_rekey_publishes_one() -> None:
    world = World()
    signing = world.keys["site-a"].public
    with pytest.raises(FormatError, match="signing key"):
        Member.from_dict(
            {
                "action": "rekey",
                "name": "site-a",
                "role": "site",
                "public_key": signing.b64(),
                "witness_key": witness_key("site-a", signing),
            },
            "member.body",
        )
    state = _state(world)
    body = Member(
        action=MemberAction.REKEY,
        name="site-a",
        role=Role.SITE,
        public_key=signing.b64(),
        witness_key=world.witness_key_text("site-a"),
    )
    apply(state, world.push(world.sign("site-a", body)))
    assert state.members["site-a"].witness_key == world.witness_key_text("site-a")


# ---- the quorum in the trust core -------------------------------------------------------------


def _committed_with(lines_by: tuple[str, ...]) -> tuple[TrustedLog, bytes]:
    world = World(witnesses=True)
    world.push(world.sign("admin", world.genesis_body()))
    world.push(world.sign("admin", WitnessPolicySet(policy=world.witness_policy(SITES, 2))))
    world.push(world.sign("alice", Task(image="a/b:1", sites=("site-a",), config={})))
    tree = MerkleTree()
    tree.extend(e.leaf_hash for e in world.entries)
    cp = Checkpoint(origin=world.origin, size=tree.size, root=tree.root())
    lines = [cosign(cp, World.witness_signer(n), name=n, time=1) for n in lines_by]
    note = with_cosignatures(sign_checkpoint(cp, world.log_key), lines)
    trusted_log = TrustedLog(Trusted())
    trusted_log.stage(world.entries)
    return trusted_log, note


def test_commit_publishes_a_view_only_with_the_quorum() -> None:
    trusted_log, note = _committed_with(("site-a", "site-c"))
    view = trusted_log.commit(note)
    assert view.size == 3 and view.cosigners == {"site-a", "site-c"}


@pytest.mark.parametrize("lines_by", [(), ("site-b",)])
def test_commit_refuses_a_checkpoint_short_of_the_quorum(lines_by: tuple[str, ...]) -> None:
    trusted_log, note = _committed_with(lines_by)
    with pytest.raises(QuorumError) as caught:
        trusted_log.commit(note)
    assert (caught.value.have, caught.value.need) == (len(lines_by), 2)
    assert trusted_log.view is None
    with pytest.raises(RuntimeError, match="spent"):
        trusted_log.stage([])


# ---- the audit --------------------------------------------------------------------------------


def test_audit_names_who_cosigned_each_checkpoint_and_demands_the_quorum() -> None:
    from ledger.audit import audit
    from ledger.errors import VerificationError

    trusted_log, note = _committed_with(("site-a", "site-c"))
    records = [e.canonical for e in trusted_log._fresh]  # the staged entries
    _, report = audit([records], checkpoint=note)
    assert report.witnessed == [(3, ["site-a", "site-c"])]
    assert report.to_dict()["witnessed"] == [{"size": 3, "cosigned_by": ["site-a", "site-c"]}]
    _, short = _committed_with(("site-b",))
    with pytest.raises(VerificationError, match="quorum"):
        audit([records], checkpoint=short)
