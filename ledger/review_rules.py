"""The rules of algorithm review (DESIGN 11), called from :func:`ledger.rules.apply`'s table.

| kind          | author     | rule                                                           |
|---------------|------------|----------------------------------------------------------------|
| review_policy | admin      | sets the policy for every task and review appended after it    |
| submission    | researcher | the image is pinned by digest (the body's own check); a digest |
|               |            | is submitted once (new version, new digest, new submission)    |
| review        | reviewer   | the submission is in the ledger; the reviewer is not of the    |
|               |            | submitter's organization; nothing follows a rejection or a     |
|               |            | revocation; approve: once per reviewer; reject: only while     |
|               |            | not approved (else revoke it); revoke: only once approved      |

"Approved" is :func:`ledger.review_state.standing` under the policy in force. The author's
membership, activity and signature were checked by ``apply`` before these run; a reviewer
revoked later keeps its earlier reviews (they were valid when made), but signs nothing new.

When a task is appended, :func:`approved` records whether the digest it pins is approved at that
point (``TaskRecord.approved_at_post``): that is what "approved as of the task's entry" means for
a site that requires review, which also refuses a digest revoked before its run starts. Every
check is a dict lookup by digest or submission id and a comparison of two counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.errors import RuleViolation
from ledger.kinds import Decision, Role
from ledger.review import Review, ReviewPolicy, Submission
from ledger.review_state import DigestReview, Policy, Verdict, standing
from ledger.state import MemberRecord, State

if TYPE_CHECKING:
    from ledger.rules import Facts


def approved(state: State, digest: str | None) -> bool:
    """Whether ``digest`` is approved under the policy in force now (False for None)."""
    if digest is None:
        return False
    review = state.reviews.get(digest)
    return review is not None and standing(digest, review, state.policy).approved


def _role(author: MemberRecord, role: Role, where: str) -> None:
    if author.role is not role:
        raise RuleViolation(
            f"{where}: {author.name!r} is {author.role.with_article()}, "
            f"only {role.with_article()} may post this"
        )


def review_policy(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    body = facts.body
    assert isinstance(body, ReviewPolicy)
    _role(author, Role.ADMIN, where)
    state.policy = Policy(
        approvals=body.approvals, organizations=body.organizations, index=facts.position
    )


def submission(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    body = facts.body
    assert isinstance(body, Submission)
    _role(author, Role.RESEARCHER, where)
    digest = body.digest
    earlier = state.reviews.get(digest)
    if earlier is not None:
        raise RuleViolation(
            f"{where}: digest {digest} was already submitted at entry {earlier.index} "
            f"(submission {earlier.submission[:16]}); a digest is submitted once"
        )
    state.submissions[facts.event_id] = digest
    state.reviews[digest] = DigestReview(
        digest=digest,
        submission=facts.event_id,
        index=facts.position,
        image=body.image,
        name=body.name,
        version=body.version,
        submitter=author.name,
        org=author.organization,
    )


def review(state: State, facts: Facts, author: MemberRecord, where: str) -> None:
    body = facts.body
    assert isinstance(body, Review)
    if author.role is not Role.REVIEWER:  # (inlined: replay runs this for every review)
        _role(author, Role.REVIEWER, where)
    digest = state.submissions.get(body.submission)
    if digest is None:
        raise RuleViolation(f"{where}: submission {body.submission[:16]} is not in the ledger")
    record = state.reviews[digest]
    org = author.organization
    if org == record.org:
        raise RuleViolation(
            f"{where}: {author.name!r} may not review a submission by {record.submitter!r}: "
            f"both are of organization {org!r}"
        )
    if record.rejected is not None:
        raise RuleViolation(
            f"{where}: digest {digest} was rejected at entry {record.rejected.entry} by "
            f"{record.rejected.reviewer!r}; a rejection is final"
        )
    if record.revoked is not None:
        raise RuleViolation(
            f"{where}: digest {digest} was revoked at entry {record.revoked.entry} by "
            f"{record.revoked.reviewer!r}; it stays blocked"
        )
    verdict = Verdict(author.name, org, facts.position, body.decision.value)
    if body.decision is Decision.APPROVE:
        earlier = record.approvals.get(author.name)
        if earlier is not None:
            raise RuleViolation(
                f"{where}: {author.name!r} already approved digest {digest} at entry "
                f"{earlier.entry}; one approval per reviewer"
            )
        record.approve(verdict)
        if record.approved_at is None and standing(digest, record, state.policy).approved:
            record.approved_at = facts.position
        return
    now = standing(digest, record, state.policy)
    # Judged by whether the digest ever stood approved (a policy raised since does not undo
    # that: tasks were posted under the approval), or stands approved now.
    ever = record.approved_at is not None or now.approved
    if body.decision is Decision.REJECT:
        if ever:
            raise RuleViolation(
                f"{where}: digest {digest} was approved ({now.counts}); revoke it instead"
            )
        record.rejected = verdict
        return
    if not ever:
        raise RuleViolation(
            f"{where}: only an approved digest may be revoked; {digest} is not ({now.counts})"
        )
    record.revoked = verdict
