"""The rule for the ``witness_policy`` kind (DESIGN 12); :func:`ledger.rules.apply` calls it.

Only an admin sets the policy. It must name this ledger's log key on its ``log`` line, and each
``witness NAME KEY`` must be an active member ``NAME`` whose published ``witness_key`` is
``KEY``: a policy never counts a key the consortium has not seen its owner publish. The latest
policy applies to every checkpoint that covers it (see :mod:`ledger.trust`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.errors import RuleViolation
from ledger.kinds import Role
from ledger.membership import WitnessPolicySet
from ledger.witness_policy import WitnessPolicy, parse_policy, parsed_policy

if TYPE_CHECKING:
    from ledger.rules import Facts
    from ledger.state import MemberRecord, State


def witness_policy(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    body = facts.body
    assert isinstance(body, WitnessPolicySet)
    if author.role is not Role.ADMIN:
        raise RuleViolation(
            f"{where}: {author.name!r} is {author.role.with_article()}, only an admin may post this"
        )
    policy = parse_policy(body.policy)
    if policy.log_key != state.log_key:
        raise RuleViolation(
            f"{where}: the policy's log key {policy.log_key[:40]!r} is not this ledger's "
            f"{state.log_key[:40]!r}"
        )
    for name, key in policy.witnesses.items():
        member = state.members.get(name)
        if member is None or not member.active:
            raise RuleViolation(f"{where}: witness {name!r} is not an active member")
        if member.witness_key != key.text():
            raise RuleViolation(
                f"{where}: {key.text()[:40]!r} is not the witness key {name!r} published"
            )
    state.witness_policy = body.policy


def policy_of(state: State) -> WitnessPolicy | None:
    """The witness policy in force in ``state`` (None: no witnesses required)."""
    return None if state.witness_policy is None else parsed_policy(state.witness_policy)
