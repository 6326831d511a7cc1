"""Every event kind's body (DESIGN 3 and 11): the one place that ties a kind to its body type.

The bodies live beside what they are about: the consortium and its members in
:mod:`ledger.membership`, a task's life in :mod:`ledger.tasks`, algorithm review in
:mod:`ledger.review`, and the vocabularies they share in :mod:`ledger.kinds`. Each is a strict,
frozen value: ``from_dict`` rejects missing, unknown and ill-typed fields; ``to_dict`` gives back
exactly the object that was parsed (optional fields absent when None), so canonical bytes
computed from the parsed JSON and from the value always agree. They are all importable from here
too (``from ledger.bodies import Task``).

A body is refused when no reader could use it, not only when it is ill-typed: a task's or a
submission's ``image`` must parse with the sites' strict image-reference parser, and a
submission's must be pinned by digest. Which blobs the registry must hold before it appends a
body is stated by :func:`registry_blobs`.
"""

from __future__ import annotations

from typing import NamedTuple

from ledger.kinds import (
    DIGEST,
    Decision,
    EventId,
    EventKind,
    MemberAction,
    ResultState,
    Role,
    StatusState,
)
from ledger.membership import (
    AGE_RECIPIENT,
    FILE_SERVICE,
    ORIGIN,
    Consortium,
    Member,
    MemberSpec,
    WitnessPolicySet,
)
from ledger.review import Review, ReviewPolicy, Submission
from ledger.tasks import (
    OUTPUT_NAME,
    BlobRef,
    Cancel,
    Limits,
    Output,
    Result,
    Status,
    Task,
    Transfer,
)

__all__ = [
    "AGE_RECIPIENT",
    "BODY_TYPES",
    "DIGEST",
    "FILE_SERVICE",
    "ORIGIN",
    "OUTPUT_NAME",
    "BlobRef",
    "Body",
    "Cancel",
    "Consortium",
    "Decision",
    "EventId",
    "EventKind",
    "Limits",
    "Member",
    "MemberAction",
    "MemberSpec",
    "NamedBlob",
    "Output",
    "Result",
    "ResultState",
    "Review",
    "ReviewPolicy",
    "Role",
    "Status",
    "StatusState",
    "Submission",
    "Task",
    "Transfer",
    "WitnessPolicySet",
    "registry_blobs",
]

Body = (
    Consortium
    | Member
    | Task
    | Cancel
    | Status
    | Result
    | Transfer
    | Submission
    | Review
    | ReviewPolicy
    | WitnessPolicySet
)

BODY_TYPES: dict[EventKind, type[Body]] = {
    EventKind.CONSORTIUM: Consortium,
    EventKind.MEMBER: Member,
    EventKind.TASK: Task,
    EventKind.CANCEL: Cancel,
    EventKind.STATUS: Status,
    EventKind.RESULT: Result,
    EventKind.TRANSFER: Transfer,
    EventKind.SUBMISSION: Submission,
    EventKind.REVIEW: Review,
    EventKind.REVIEW_POLICY: ReviewPolicy,
    EventKind.WITNESS_POLICY: WitnessPolicySet,
}


class NamedBlob(NamedTuple):
    """A blob a body names: where in the body, its SHA-256, and its size (None: not stated)."""

    where: str
    sha256: str
    size: int | None


def registry_blobs(body: Body) -> tuple[NamedBlob, ...]:
    """The blobs ``body`` names that live in the registry's blob store, which must hold each one
    before it appends the event (DESIGN 3: blobs are uploaded before the event that names them).

    They are a task's ``config_blob`` and a result's ``log`` and outputs, except outputs with
    ``delivered_to``: those went to a site's FileService and the registry never sees them. A
    task's ``inputs`` name earlier tasks, not blobs, and a ``transfer`` records a file a
    FileService received: neither is the registry's to hold. The review kinds name no blobs (a
    submission's config schema is inline).
    """
    if isinstance(body, Task):
        if body.config_blob is None:
            return ()
        return (NamedBlob("task.body.config_blob", body.config_blob, None),)
    if isinstance(body, Result):
        named = [
            NamedBlob(f"result.body.outputs[{i}] ({o.name})", o.sha256, o.size)
            for i, o in enumerate(body.outputs)
            if o.delivered_to is None
        ]
        if body.log is not None:
            named.append(NamedBlob("result.body.log", body.log.sha256, body.log.size))
        return tuple(named)
    return ()
