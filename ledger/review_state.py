"""What the replayed ledger knows about algorithm review, and the one verdict every reader draws.

Per submitted digest, a :class:`DigestReview` (mutable, in :class:`ledger.state.State`, changed
only by :mod:`ledger.review_rules`) and its frozen :class:`ReviewSnapshot` (in
:class:`ledger.view.View`, for readers); the :class:`Policy` in force. Both record types answer
the same questions, so :func:`standing` (how a digest stands under a policy) is written once and
is what the registry's rules, a site's decision, ``siteclient check-image``, ``pht image`` and
``pht audit`` all use.

Organizations are compared by key: a member's ``org``, or ``@<name>`` for a member without one
(its own organization; ``@`` never appears in a member or organization name, so the two cannot
collide).

Invariants: a digest is submitted once; approvals are keyed by reviewer (one each) and kept when
the reviewer is revoked later; ``orgs`` is the set of their organizations (derived, never
serialized); ``rejected`` and ``revoked`` are each set at most once, and after either no review
of the digest is accepted. So :func:`standing` is O(1): two counts and two fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from ledger.kinds import Decision, EventId
from ledger.review import DEFAULT_APPROVALS, DEFAULT_ORGANIZATIONS


def org_key(name: str, org: str | None) -> str:
    """The organization a member counts for: its ``org``, or ``@name`` (its own)."""
    return org if org is not None else f"@{name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """How many approvals from how many distinct organizations make a digest approved;
    ``index`` is the ``review_policy`` entry that set it (None: the default)."""

    approvals: int = DEFAULT_APPROVALS
    organizations: int = DEFAULT_ORGANIZATIONS
    index: int | None = None

    def to_list(self) -> list[Any]:
        return [self.approvals, self.organizations, self.index]

    @classmethod
    def from_list(cls, value: list[Any]) -> Policy:
        return cls(approvals=value[0], organizations=value[1], index=value[2])


DEFAULT_POLICY = Policy()


class Verdict(NamedTuple):
    """One review that counts: who decided, for which organization, at which entry, and what
    (a :class:`Decision` value). A tuple: replay makes one per approval, so it is cheap to make
    and the garbage collector stops tracking it."""

    reviewer: str
    org: str  # the organization key (see org_key)
    entry: int
    decision: str

    def to_list(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_list(cls, value: list[Any]) -> Verdict:
        return cls(value[0], value[1], value[2], Decision(value[3]).value)


class Reviewed(Protocol):
    """What :func:`standing` reads: a :class:`DigestReview` or a :class:`ReviewSnapshot`."""

    @property
    def approvals(self) -> Mapping[str, Verdict]: ...
    @property
    def orgs(self) -> AbstractSet[str]: ...
    @property
    def rejected(self) -> Verdict | None: ...
    @property
    def revoked(self) -> Verdict | None: ...


@dataclass(slots=True, kw_only=True)
class DigestReview:
    """The review of one submitted digest, as the rules fold it (owned by the state)."""

    digest: str
    submission: EventId
    index: int  # the submission's entry
    image: str
    name: str
    version: str
    submitter: str
    org: str  # the submitter's organization key
    approvals: dict[str, Verdict] = field(default_factory=dict)  # by reviewer, in ledger order
    rejected: Verdict | None = None
    revoked: Verdict | None = None
    # The organizations of the approvals (derived, so that a verdict counts them in O(1)).
    orgs: set[str] = field(default_factory=set)
    # The entry at which the digest first stood approved: from then on a reviewer revokes it,
    # never rejects it, whatever the policy in force later says.
    approved_at: int | None = None

    def approve(self, verdict: Verdict) -> None:
        self.approvals[verdict.reviewer] = verdict
        self.orgs.add(verdict.org)

    def to_dict(self) -> dict[str, Any]:
        return {
            "submission": self.submission,
            "index": self.index,
            "image": self.image,
            "name": self.name,
            "version": self.version,
            "submitter": self.submitter,
            "org": self.org,
            "approvals": [v.to_list() for v in self.approvals.values()],
            "rejected": None if self.rejected is None else self.rejected.to_list(),
            "revoked": None if self.revoked is None else self.revoked.to_list(),
            "approved_at": self.approved_at,
        }

    @classmethod
    def from_dict(cls, digest: str, d: dict[str, Any]) -> DigestReview:
        approvals = [Verdict.from_list(v) for v in d["approvals"]]
        return cls(
            digest=digest,
            submission=EventId(d["submission"]),
            index=d["index"],
            image=d["image"],
            name=d["name"],
            version=d["version"],
            submitter=d["submitter"],
            org=d["org"],
            approvals={v.reviewer: v for v in approvals},
            orgs={v.org for v in approvals},
            rejected=None if d["rejected"] is None else Verdict.from_list(d["rejected"]),
            revoked=None if d["revoked"] is None else Verdict.from_list(d["revoked"]),
            approved_at=d.get("approved_at"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewSnapshot:
    """A frozen :class:`DigestReview`, for views that many threads read."""

    digest: str
    submission: EventId
    index: int
    image: str
    name: str
    version: str
    submitter: str
    org: str
    approvals: Mapping[str, Verdict]
    rejected: Verdict | None
    revoked: Verdict | None
    orgs: frozenset[str]

    @classmethod
    def of(cls, record: DigestReview) -> ReviewSnapshot:
        return cls(
            digest=record.digest,
            submission=record.submission,
            index=record.index,
            image=record.image,
            name=record.name,
            version=record.version,
            submitter=record.submitter,
            org=record.org,
            approvals=MappingProxyType(dict(record.approvals)),
            rejected=record.rejected,
            revoked=record.revoked,
            orgs=frozenset(record.orgs),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing:
    """How a digest stands under a policy: approved or not, and why, in one sentence."""

    digest: str
    approved: bool
    submitted: bool
    approvals: int
    organizations: int
    policy: Policy
    blocked: Verdict | None  # the rejection or revocation that ended it, if any

    @property
    def counts(self) -> str:
        return (
            f"{self.approvals} of {self.policy.approvals} approvals, "
            f"{self.organizations} of {self.policy.organizations} organizations"
        )

    def describe(self) -> str:
        if not self.submitted:
            return f"digest {self.digest} was never submitted for review"
        if self.blocked is not None:
            verb = "rejected" if self.blocked.decision == Decision.REJECT else "revoked"
            return (
                f"digest {self.digest} was {verb} at entry {self.blocked.entry} by "
                f"{self.blocked.reviewer} ({self.counts})"
            )
        verb = "is approved" if self.approved else "is not approved"
        return f"digest {self.digest} {verb} ({self.counts})"


def standing(digest: str, review: Reviewed | None, policy: Policy) -> Standing:
    """How ``digest`` (with ``review``, None when never submitted) stands under ``policy``.

    Approved means: at least ``policy.approvals`` approvals, from at least
    ``policy.organizations`` distinct organizations, and neither rejected nor revoked.
    """
    if review is None:
        return Standing(
            digest=digest,
            approved=False,
            submitted=False,
            approvals=0,
            organizations=0,
            policy=policy,
            blocked=None,
        )
    count = len(review.approvals)
    orgs = len(review.orgs)
    blocked = review.rejected or review.revoked
    return Standing(
        digest=digest,
        approved=blocked is None and count >= policy.approvals and orgs >= policy.organizations,
        submitted=True,
        approvals=count,
        organizations=orgs,
        policy=policy,
        blocked=blocked,
    )
