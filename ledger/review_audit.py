"""The auditor's account of algorithm review (DESIGN 11), a part of :mod:`ledger.audit`'s report.

From a verified replay: every submission with each review of it (who, of which organization, at
which entry, the decision and its note, and when the reviewer was revoked, if ever: a reviewer
revoked later keeps its earlier reviews, and the report shows both), how it stands now under the
policy in force; and **every run of an image that was not approved at the time**: a site's
result that names the digest it pulled (so the image ran) for a task whose digest was not
approved as of the task's entry, or was rejected or revoked before that result. A site that does
not require review runs such tasks, which is allowed; the report makes them visible.

The replayed state is the source of every fact here except the notes, which only the entries
hold; the entries were verified before this runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.kinds import Decision, EventId
from ledger.review_state import Verdict, standing
from ledger.state import State


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewEntry:
    index: int
    reviewer: str
    org: str
    decision: str
    note: str
    reviewer_revoked: int | None  # the entry that revoked the reviewer later, if any


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmissionReport:
    submission: str
    index: int
    digest: str
    image: str
    name: str
    version: str
    submitter: str
    org: str
    state: str  # approved, pending, rejected or revoked (now, under the policy in force)
    reviews: list[ReviewEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__ if name != "reviews"}
        out["reviews"] = [{n: getattr(r, n) for n in r.__slots__} for r in self.reviews]
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class UnreviewedRun:
    task: str
    index: int  # the task's entry
    site: str
    result: int  # the site's result entry
    state: str
    image: str
    ran: str | None  # the digest the site says it ran (None: it named none)
    why: str


class ReviewAccount:
    """Collects the notes while the auditor walks the entries, then writes the account."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._notes: dict[int, str] = {}

    def note(self, index: int, text: str) -> None:
        self._notes[index] = text

    def submissions(self) -> list[SubmissionReport]:
        state = self._state
        out = []
        for digest, record in state.reviews.items():
            verdicts = [*record.approvals.values(), record.rejected, record.revoked]
            now = standing(digest, record, state.policy)
            status = "approved" if now.approved else "pending"
            if now.blocked is not None:
                rejected = now.blocked.decision == Decision.REJECT
                status = "rejected" if rejected else "revoked"
            out.append(
                SubmissionReport(
                    submission=record.submission,
                    index=record.index,
                    digest=digest,
                    image=record.image,
                    name=record.name,
                    version=record.version,
                    submitter=record.submitter,
                    org=record.org,
                    state=status,
                    reviews=sorted(
                        (self._entry(v) for v in verdicts if v is not None),
                        key=lambda r: r.index,
                    ),
                )
            )
        return sorted(out, key=lambda s: s.index)

    def _entry(self, verdict: Verdict) -> ReviewEntry:
        member = self._state.members.get(verdict.reviewer)
        return ReviewEntry(
            index=verdict.entry,
            reviewer=verdict.reviewer,
            org=verdict.org,
            decision=verdict.decision,
            note=self._notes.get(verdict.entry, ""),
            reviewer_revoked=member.revoked if member is not None else None,
        )

    def unreviewed_runs(
        self, runs: Iterable[tuple[str, int, str, str, int, str, str | None]]
    ) -> list[UnreviewedRun]:
        """Of ``runs`` (task id, task entry, image, site, result entry, state, digest run),
        those of an image not approved at the time."""
        out = []
        for task, index, image, site, result, state, ran in runs:
            if state == "rejected" or (state == "cancelled" and ran is None):
                continue  # no container ran (a task cancelled before it started names no digest)
            why = self._why(EventId(task), image, result, ran)
            if why is not None:
                out.append(
                    UnreviewedRun(
                        task=task,
                        index=index,
                        site=site,
                        result=result,
                        state=state,
                        image=image,
                        ran=ran,
                        why=why,
                    )
                )
        return out

    def _why(self, task: EventId, image: str, result: int, ran: str | None) -> str | None:
        record = self._state.tasks[task]
        _, at, digest = image.partition("@")
        if ran is None:
            return "the site's result names no image digest: what ran cannot be told"
        if not at:
            return "not pinned by digest"
        if ran != digest:
            return f"the site ran {ran}, not the pinned {digest}"
        if not record.approved_at_post:
            return f"not approved as of the task's entry {record.index}"
        review = self._state.reviews[digest]
        blocked = review.rejected or review.revoked
        if blocked is not None and blocked.entry < result:
            verb = "rejected" if blocked.decision == Decision.REJECT else "revoked"
            return f"{verb} at entry {blocked.entry}, before the result at entry {result}"
        return None
