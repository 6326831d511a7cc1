"""The ledger's vocabularies (DESIGN 3 and 11) and the field readers every body module shares.

The event kinds, the roles, and the states and decisions events carry are :class:`StrEnum`s;
:func:`enum_value` reads one strictly, naming the allowed values when a body holds another. The
body modules (:mod:`ledger.membership`, :mod:`ledger.tasks`, :mod:`ledger.review`) read their
fields with these readers, and :mod:`ledger.bodies` ties each kind to its body.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cache
from typing import NewType, TypeVar

from ledger import fields as f
from ledger.errors import FormatError

EventId = NewType("EventId", str)

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
E = TypeVar("E", bound=StrEnum)


class EventKind(StrEnum):
    CONSORTIUM = "consortium"
    MEMBER = "member"
    TASK = "task"
    CANCEL = "cancel"
    STATUS = "status"
    RESULT = "result"
    TRANSFER = "transfer"
    SUBMISSION = "submission"
    REVIEW = "review"
    REVIEW_POLICY = "review_policy"
    WITNESS_POLICY = "witness_policy"


class Role(StrEnum):
    ADMIN = "admin"
    RESEARCHER = "researcher"
    SITE = "site"
    AUDITOR = "auditor"
    REVIEWER = "reviewer"

    def with_article(self) -> str:
        """The role as a rule message says it: "an admin", "a researcher"."""
        return f"{'an' if self.value[0] in 'aeiou' else 'a'} {self.value}"


class MemberAction(StrEnum):
    ADD = "add"
    REVOKE = "revoke"
    REKEY = "rekey"  # publish or rotate the member's encryption key / file service address


class StatusState(StrEnum):
    ACCEPTED = "accepted"
    STARTED = "started"
    INTERRUPTED = "interrupted"


class ResultState(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Decision(StrEnum):
    """A reviewer's decision on a submission (DESIGN 11)."""

    APPROVE = "approve"
    REJECT = "reject"
    REVOKE = "revoke"


@cache
def _members(cls: type[E]) -> dict[str, E]:
    return {member.value: member for member in cls}


def enum_value(cls: type[E], value: object, where: str) -> E:
    """``value`` as a member of ``cls``; FormatError naming the allowed values otherwise."""
    members: dict[str, E] = _members(cls)
    member = members.get(value) if isinstance(value, str) else None
    if member is not None:
        return member
    text = f.string(value, where, max_len=32)
    allowed = ", ".join(member.value for member in cls)
    raise FormatError(f"{where}: expected one of {allowed}, found {text!r}")


def event_id(value: object, where: str) -> EventId:
    return EventId(f.hex64(value, where))


def digest(value: object, where: str) -> str:
    return f.string(value, where, pattern=DIGEST, max_len=80, what="sha256:<64 hex>")


def text200(value: object, where: str) -> str:
    return f.string(value, where, max_len=200)


def text1000(value: object, where: str) -> str:
    return f.string(value, where, max_len=1000)


def text2000(value: object, where: str) -> str:
    return f.string(value, where, max_len=2000)
