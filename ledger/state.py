"""The replayed state (projection) of a ledger: members and roles, tasks and each site's progress,
and the review of submitted images (:mod:`ledger.review_state`).

The state is produced only by :func:`ledger.rules.apply`. It is a plain value owned by one writer;
``apply`` checks everything before it changes anything, so a refused entry leaves it untouched.
``to_dict``/``from_dict`` give the snapshot form, so that opening a large ledger does not replay
its whole history. A snapshot written before organizations and review existed still loads: a
member without ``org`` is its own organization, a task without ``approved_at_post`` was not
approved (no review could exist then), and the review parts start empty under the default policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crypto import KeyId, PublicKey
from ledger.events import ZERO_HASH, EntryHash
from ledger.kinds import EventId, ResultState, Role, StatusState
from ledger.review_state import DEFAULT_POLICY, DigestReview, Policy, org_key

PENDING = "pending"


@dataclass(slots=True, kw_only=True)
class MemberRecord:
    name: str
    role: Role
    public_key: PublicKey
    added: int
    revoked: int | None = None
    encryption_key: str | None = None  # age X25519 recipient
    file_service: str | None = None
    org: str | None = None  # None: the member is its own organization
    witness_key: str | None = None  # its C2SP cosignature/v1 verifier key (DESIGN 12)
    changed: int | None = None  # the latest rekey entry about it, if any

    @property
    def active(self) -> bool:
        return self.revoked is None

    organization: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # The organization key it counts for in review (see org_key); the rules read it for
        # every review, and name and org never change.
        self.organization = org_key(self.name, self.org)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "role": self.role.value,
            "public_key": self.public_key.b64(),
            "added": self.added,
            "revoked": self.revoked,
            "encryption_key": self.encryption_key,
            "file_service": self.file_service,
        }
        if self.org is not None:
            out["org"] = self.org
        if self.witness_key is not None:
            out["witness_key"] = self.witness_key
        if self.changed is not None:
            out["changed"] = self.changed
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemberRecord:
        return cls(
            name=d["name"],
            role=Role(d["role"]),
            public_key=PublicKey.from_b64(d["public_key"]),
            added=d["added"],
            revoked=d["revoked"],
            encryption_key=d.get("encryption_key"),
            file_service=d.get("file_service"),
            org=d.get("org"),
            witness_key=d.get("witness_key"),
            changed=d.get("changed"),
        )


@dataclass(slots=True, kw_only=True)
class SiteProgress:
    """One site's view of one task: the latest state and the index of the event that set it."""

    state: str = PENDING  # pending, a StatusState, or a ResultState once finished
    index: int | None = None
    finished: bool = False

    def to_list(self) -> list[Any]:
        return [self.state, self.index, self.finished]

    @classmethod
    def from_list(cls, value: list[Any]) -> SiteProgress:
        return cls(state=value[0], index=value[1], finished=value[2])


@dataclass(slots=True, kw_only=True)
class TaskRecord:
    event_id: EventId
    index: int
    author: str
    sites: dict[str, SiteProgress]
    parent: EventId | None = None
    cancelled: int | None = None
    encrypt_for: str | None = None  # the age recipient outputs are encrypted for, if any
    deliver_to: str | None = None  # the site whose FileService receives the outputs, if any
    # Whether the task pins a digest that was approved under the review policy in force when
    # the task was appended (DESIGN 11); a revocation later does not change it.
    approved_at_post: bool = False

    @property
    def finished(self) -> bool:
        return all(progress.finished for progress in self.sites.values())

    def to_dict(self) -> dict[str, Any]:
        out = {
            "index": self.index,
            "author": self.author,
            "sites": {name: p.to_list() for name, p in self.sites.items()},
            "parent": self.parent,
            "cancelled": self.cancelled,
            "encrypt_for": self.encrypt_for,
            "deliver_to": self.deliver_to,
        }
        if self.approved_at_post:
            out["approved_at_post"] = True
        return out

    @classmethod
    def from_dict(cls, event_id: str, d: dict[str, Any]) -> TaskRecord:
        return cls(
            event_id=EventId(event_id),
            index=d["index"],
            author=d["author"],
            sites={name: SiteProgress.from_list(p) for name, p in d["sites"].items()},
            parent=d["parent"],
            cancelled=d["cancelled"],
            encrypt_for=d.get("encrypt_for"),
            deliver_to=d.get("deliver_to"),
            approved_at_post=d.get("approved_at_post", False),
        )


@dataclass(slots=True, kw_only=True)
class State:
    """Everything the rules need to judge the next entry."""

    size: int = 0
    head: EntryHash = ZERO_HASH
    origin: str = ""
    name: str = ""
    log_key: str = ""
    members: dict[str, MemberRecord] = field(default_factory=dict)
    keys: dict[KeyId, str] = field(default_factory=dict)
    tasks: dict[EventId, TaskRecord] = field(default_factory=dict)
    policy: Policy = DEFAULT_POLICY
    submissions: dict[EventId, str] = field(default_factory=dict)  # submission id -> digest
    reviews: dict[str, DigestReview] = field(default_factory=dict)  # by digest
    witness_policy: str | None = None  # C2SP tlog-policy text set by the admin (DESIGN 12)

    def member_by_key(self, key_id: KeyId) -> MemberRecord | None:
        name = self.keys.get(key_id)
        return None if name is None else self.members[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "head": self.head,
            "origin": self.origin,
            "name": self.name,
            "log_key": self.log_key,
            "members": [m.to_dict() for m in self.members.values()],
            "tasks": {event_id: t.to_dict() for event_id, t in self.tasks.items()},
            "policy": self.policy.to_list(),
            "reviews": {digest: r.to_dict() for digest, r in self.reviews.items()},
            **({"witness_policy": self.witness_policy} if self.witness_policy else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> State:
        members = [MemberRecord.from_dict(m) for m in d["members"]]
        reviews = {k: DigestReview.from_dict(k, v) for k, v in d.get("reviews", {}).items()}
        policy = d.get("policy")
        return cls(
            size=d["size"],
            head=EntryHash(d["head"]),
            origin=d["origin"],
            name=d["name"],
            log_key=d["log_key"],
            members={m.name: m for m in members},
            keys={m.public_key.key_id: m.name for m in members},
            tasks={EventId(k): TaskRecord.from_dict(k, v) for k, v in d["tasks"].items()},
            policy=DEFAULT_POLICY if policy is None else Policy.from_list(policy),
            submissions={r.submission: digest for digest, r in reviews.items()},
            reviews=reviews,
            witness_policy=d.get("witness_policy"),
        )


FINAL_STATES = frozenset(s.value for s in ResultState)
STATUS_STATES = frozenset(s.value for s in StatusState)
