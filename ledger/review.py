"""The bodies of algorithm review (DESIGN 11): ``submission``, ``review``, ``review_policy``.

- A **submission** (by a researcher) offers one analysis image for review: the image pinned by
  digest (``name@sha256:...``, a tag alone is malformed, for the digest is what is reviewed and
  what a site pulls), a name, a version, a description, the URL of its source and, optionally,
  the JSON Schema its task configurations are expected to follow.
- A **review** (by a reviewer) approves, rejects or revokes one submission, with a note.
- A **review_policy** (by an admin) says how many approvals, from how many distinct
  organizations, make a digest approved. Until the first one, the policy is two approvals from
  two organizations (:data:`DEFAULT_APPROVALS`, :data:`DEFAULT_ORGANIZATIONS`).

What each may follow is the rules' (:mod:`ledger.review_rules`); these are the shapes only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ledger import fields as f
from ledger.errors import FormatError, InvalidReferenceError
from ledger.kinds import Decision, EventId, EventKind, enum_value, event_id, text2000
from ledger.reference import REFERENCE_MAX_LENGTH, parse_reference
from ledger.tasks import image_digest

DEFAULT_APPROVALS = 2
DEFAULT_ORGANIZATIONS = 2
POLICY_MAX = 64
SOURCE = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][\x21-\x7e]*)?")


def _line(value: object, where: str, max_len: int) -> str:
    """A non-empty single line of printable text."""
    text = f.string(value, where, max_len=max_len)
    if not text.strip() or not text.isprintable():
        raise FormatError(f"{where}: expected a non-empty line of printable text, found {text!r}")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    KIND: ClassVar[EventKind] = EventKind.SUBMISSION
    image: str  # pinned: name[:tag]@sha256:<64 hex>
    name: str
    version: str
    description: str
    source: str  # http(s) URL of the image's source
    config_schema: Mapping[str, Any] | None = None  # the JSON Schema task configs should follow

    def __post_init__(self) -> None:
        try:
            ref = parse_reference(self.image)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(f"submission.body.image: {exc}") from exc
        if ref.digest is None:
            raise FormatError(
                f"submission.body.image: {self.image!r} is not pinned by digest; a submission "
                "names the exact image reviewed, as name@sha256:<64 hex>"
            )

    @property
    def digest(self) -> str:
        pinned = image_digest(self.image)
        assert pinned is not None  # checked on construction
        return pinned

    @classmethod
    def from_dict(cls, value: object, where: str) -> Submission:
        d = f.obj(
            value,
            where,
            ("image", "name", "version", "description", "source"),
            ("config_schema",),
        )
        schema = d.get("config_schema")
        if "config_schema" in d and not isinstance(schema, dict):
            raise FormatError(
                f"{where}.config_schema: expected an object (a JSON Schema), found "
                f"{f.describe(schema)}"
            )
        return cls(
            image=f.string(d["image"], f"{where}.image", max_len=REFERENCE_MAX_LENGTH),
            name=_line(d["name"], f"{where}.name", 200),
            version=_line(d["version"], f"{where}.version", 64),
            description=text2000(d["description"], f"{where}.description"),
            source=f.string(
                d["source"], f"{where}.source", pattern=SOURCE, max_len=512, what="an http(s) URL"
            ),
            config_schema=schema,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "source": self.source,
        }
        if self.config_schema is not None:
            out["config_schema"] = self.config_schema
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Review:
    KIND: ClassVar[EventKind] = EventKind.REVIEW
    submission: EventId
    decision: Decision
    note: str

    @classmethod
    def from_dict(cls, value: object, where: str) -> Review:
        d = f.obj(value, where, ("submission", "decision", "note"))
        return cls(
            submission=event_id(d["submission"], f"{where}.submission"),
            decision=enum_value(Decision, d["decision"], f"{where}.decision"),
            note=text2000(d["note"], f"{where}.note"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "submission": self.submission,
            "decision": self.decision.value,
            "note": self.note,
        }


def _count(value: object, where: str) -> int:
    return f.integer(value, where, low=1, high=POLICY_MAX)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewPolicy:
    KIND: ClassVar[EventKind] = EventKind.REVIEW_POLICY
    approvals: int = DEFAULT_APPROVALS
    organizations: int = DEFAULT_ORGANIZATIONS

    def __post_init__(self) -> None:
        for name in ("approvals", "organizations"):
            _count(getattr(self, name), f"review_policy.body.{name}")
        if self.organizations > self.approvals:
            raise FormatError(
                f"review_policy.body: {self.organizations} organizations cannot be met by "
                f"{self.approvals} approvals (one approval counts for one organization)"
            )

    @classmethod
    def from_dict(cls, value: object, where: str) -> ReviewPolicy:
        d = f.obj(value, where, ("approvals", "organizations"))
        return cls(
            approvals=_count(d["approvals"], f"{where}.approvals"),
            organizations=_count(d["organizations"], f"{where}.organizations"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"approvals": self.approvals, "organizations": self.organizations}
