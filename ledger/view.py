"""Immutable views of a verified ledger: what readers get, never the state being folded.

:class:`View` is published by :class:`ledger.trust.TrustedLog` only after the checkpoint covering
it verified. It holds frozen snapshots of the members and tasks, so any number of threads may read
it while the next sync folds new entries into the working state. Each new view shares the
snapshots of every task, member and reviewed digest the new entries did not touch
(:meth:`View.advanced`), so publishing costs a copy of a few dicts of references, not a copy of
the state. A site decides whether a task's image passed review from its view alone: the task's
``approved_at_post`` and the digest's :class:`~ledger.review_state.ReviewSnapshot` (two dict
lookups), under the view's ``policy``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from crypto import KeyId, PublicKey
from ledger.bodies import (
    Cancel,
    EventId,
    EventKind,
    Result,
    Review,
    Role,
    Status,
    Submission,
    Task,
    Transfer,
)
from ledger.checkpoint import Checkpoint
from ledger.errors import ProofError
from ledger.events import Entry
from ledger.merkle import MerkleTree
from ledger.review_state import DEFAULT_POLICY, Policy, ReviewSnapshot, Standing, org_key, standing
from ledger.state import MemberRecord, State, TaskRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSnapshot:
    name: str
    role: Role
    public_key: PublicKey
    added: int
    revoked: int | None
    encryption_key: str | None
    file_service: str | None
    org: str | None = None
    witness_key: str | None = None
    changed: int | None = None  # the latest rekey entry about it, if any

    @property
    def active(self) -> bool:
        return self.revoked is None

    @property
    def organization(self) -> str:
        return org_key(self.name, self.org)

    @classmethod
    def of(cls, record: MemberRecord) -> MemberSnapshot:
        return cls(
            name=record.name,
            role=record.role,
            public_key=record.public_key,
            added=record.added,
            revoked=record.revoked,
            encryption_key=record.encryption_key,
            file_service=record.file_service,
            org=record.org,
            witness_key=record.witness_key,
            changed=record.changed,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteSnapshot:
    """One site's progress on one task: ``pending``, a status state, or a final result state."""

    state: str
    index: int | None
    finished: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSnapshot:
    event_id: EventId
    index: int
    author: str
    sites: Mapping[str, SiteSnapshot]
    parent: EventId | None
    cancelled: int | None
    encrypt_for: str | None
    deliver_to: str | None
    approved_at_post: bool = False

    @property
    def finished(self) -> bool:
        return all(progress.finished for progress in self.sites.values())

    @classmethod
    def of(cls, record: TaskRecord) -> TaskSnapshot:
        return cls(
            event_id=record.event_id,
            index=record.index,
            author=record.author,
            sites=MappingProxyType(
                {
                    name: SiteSnapshot(state=p.state, index=p.index, finished=p.finished)
                    for name, p in record.sites.items()
                }
            ),
            parent=record.parent,
            cancelled=record.cancelled,
            encrypt_for=record.encrypt_for,
            deliver_to=record.deliver_to,
            approved_at_post=record.approved_at_post,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class View:
    """The ledger as verified up to ``size``, under the signed checkpoint ``note``.

    ``fresh`` are the entries this view covers that the one before it did not.
    """

    size: int
    origin: str
    name: str
    log_key: str
    genesis: str
    note: bytes
    checkpoint: Checkpoint
    members: Mapping[str, MemberSnapshot]
    keys: Mapping[KeyId, str]
    tasks: Mapping[EventId, TaskSnapshot]
    policy: Policy = DEFAULT_POLICY
    reviews: Mapping[str, ReviewSnapshot] = field(default_factory=lambda: MappingProxyType({}))
    fresh: tuple[Entry, ...] = ()
    witness_policy: str | None = None  # tlog-policy text in force (None: no witnesses needed)
    cosigners: frozenset[str] = frozenset()  # the policy's witnesses that cosigned ``note``
    _tree: MerkleTree = field(repr=False, compare=False)

    @classmethod
    def of(
        cls,
        state: State,
        tree: MerkleTree,
        *,
        genesis: str,
        note: bytes,
        checkpoint: Checkpoint,
        fresh: tuple[Entry, ...] = (),
        cosigners: frozenset[str] = frozenset(),
    ) -> View:
        """A view of all of ``state`` (the first view after loading)."""
        return cls(
            size=state.size,
            origin=state.origin,
            name=state.name,
            log_key=state.log_key,
            genesis=genesis,
            note=note,
            checkpoint=checkpoint,
            members=MappingProxyType({n: MemberSnapshot.of(m) for n, m in state.members.items()}),
            keys=MappingProxyType(dict(state.keys)),
            tasks=MappingProxyType({i: TaskSnapshot.of(t) for i, t in state.tasks.items()}),
            policy=state.policy,
            reviews=MappingProxyType({d: ReviewSnapshot.of(r) for d, r in state.reviews.items()}),
            fresh=fresh,
            witness_policy=state.witness_policy,
            cosigners=cosigners,
            _tree=tree,
        )

    def advanced(
        self,
        state: State,
        tree: MerkleTree,
        *,
        note: bytes,
        checkpoint: Checkpoint,
        fresh: tuple[Entry, ...],
        cosigners: frozenset[str] = frozenset(),
    ) -> View:
        """The view of ``state`` after ``fresh``: only what those entries touched is copied."""
        touched = set(_tasks_touched(fresh))
        tasks: Mapping[EventId, TaskSnapshot] = self.tasks
        if touched:
            updated = dict(self.tasks)
            for event_id in touched:
                record = state.tasks.get(event_id)
                if record is not None:
                    updated[event_id] = TaskSnapshot.of(record)
            tasks = MappingProxyType(updated)
        reviews: Mapping[str, ReviewSnapshot] = self.reviews
        digests = set(_digests_touched(fresh, state))
        if digests:
            updated_reviews = dict(self.reviews)
            for digest in digests:
                updated_reviews[digest] = ReviewSnapshot.of(state.reviews[digest])
            reviews = MappingProxyType(updated_reviews)
        membership = any(
            e.event.event.kind in (EventKind.MEMBER, EventKind.CONSORTIUM) for e in fresh
        )
        return View(
            size=state.size,
            origin=state.origin,
            name=state.name,
            log_key=state.log_key,
            genesis=self.genesis,
            note=note,
            checkpoint=checkpoint,
            members=MappingProxyType({n: MemberSnapshot.of(m) for n, m in state.members.items()})
            if membership
            else self.members,
            keys=MappingProxyType(dict(state.keys)) if membership else self.keys,
            tasks=tasks,
            policy=state.policy,
            reviews=reviews,
            fresh=fresh,
            witness_policy=state.witness_policy,
            cosigners=cosigners,
            _tree=tree,
        )

    def standing(self, digest: str) -> Standing:
        """How ``digest`` stands in review now, under the policy in force."""
        return standing(digest, self.reviews.get(digest), self.policy)

    def leaf(self, index: int) -> bytes:
        """The verified leaf hash of entry ``index`` (below this view's size)."""
        if not 0 <= index < self.size:
            raise ProofError(f"entry {index} is beyond this view's size {self.size}")
        return self._tree.leaf(index)

    def member_by_key(self, key_id: KeyId) -> MemberSnapshot | None:
        name = self.keys.get(key_id)
        return None if name is None else self.members.get(name)


def _tasks_touched(entries: Iterable[Entry]) -> Iterable[EventId]:
    for entry in entries:
        body = entry.event.event.body
        if isinstance(body, Task):
            yield entry.event.event.id
        elif isinstance(body, Status | Result | Cancel | Transfer):
            yield body.task


def _digests_touched(entries: Iterable[Entry], state: State) -> Iterable[str]:
    for entry in entries:
        body = entry.event.event.body
        if isinstance(body, Submission):
            yield body.digest
        elif isinstance(body, Review):
            yield state.submissions[body.submission]
