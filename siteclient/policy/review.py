"""Has this task's image passed review? The site's ``require_review`` rule (DESIGN 11), pure.

A site with ``require_review`` runs a task only when its image is pinned by digest, that digest
was approved under the consortium's review policy **as of the task's entry** (the rules recorded
it in the task's record when it was appended: ``approved_at_post``), and no rejection or
revocation of the digest has appeared since, up to the verified view the site holds when the run
starts. Everything is read from the site's own verified view of the ledger, never from what the
registry says about it; the decision is two dict lookups.

Every refusal reason starts with ``review:`` and names the digest, what the ledger says about
it, and the site, so that the signed ``rejected`` result tells the researcher what to do. The
image allowlist (:mod:`siteclient.policy.allowlist`) still applies, before this.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.kinds import Decision, EventId
from ledger.reference import ImageRef
from ledger.view import View


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewDecision:
    allowed: bool
    reason: str


def decide_review(view: View | None, task: EventId, ref: ImageRef, *, site: str) -> ReviewDecision:
    """May task ``task``, which names image ``ref``, run at ``site``, which requires review?"""
    if ref.digest is None:
        return _refuse(
            f"image {ref.familiar()!r} is not pinned by digest; site {site!r} runs only images "
            f"approved by review, named as '{ref.familiar_repository}@sha256:<digest>'"
        )
    digest = ref.digest
    record = view.tasks.get(task) if view is not None else None
    if view is None or record is None:
        return _refuse(f"task {task[:16]} is not in site {site!r}'s verified view of the ledger")
    standing = view.standing(digest)
    if standing.blocked is not None:
        verb = "rejected" if standing.blocked.decision == Decision.REJECT else "revoked"
        when = "after" if standing.blocked.entry > record.index else "before"
        return _refuse(
            f"digest {digest} was {verb} at entry {standing.blocked.entry} by "
            f"{standing.blocked.reviewer!r}, {when} the task's entry {record.index}; "
            f"site {site!r} runs only approved images"
        )
    if not record.approved_at_post:
        if not standing.submitted:
            status = "was never submitted for review"
        elif standing.approved:
            status = (
                f"was not approved as of the task's entry {record.index} (it is now: post the "
                "task again)"
            )
        else:
            status = f"is not approved ({standing.counts}) as of the task's entry {record.index}"
        return _refuse(f"digest {digest} {status}; site {site!r} runs only approved images")
    return ReviewDecision(
        allowed=True,
        reason=f"review: digest {digest} was approved as of the task's entry {record.index} and "
        "is not revoked",
    )


def _refuse(reason: str) -> ReviewDecision:
    return ReviewDecision(allowed=False, reason=f"review: {reason}")
