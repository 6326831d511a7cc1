"""The review part of ``pht audit``'s text report (DESIGN 11; :mod:`ledger.review_audit`).

Each submission with how it stands under the policy in force and every review of it: the
reviewer, its organization, the entry, the decision and the note, and, for a reviewer revoked
later, when (its earlier reviews still count). Then every run of an image that was not approved
at the time, naming the task, the site and why: allowed at a site that does not require review,
and visible here.
"""

from __future__ import annotations

from ledger.audit import AuditReport


def render_review(report: AuditReport) -> list[str]:
    approvals, organizations = report.policy
    lines = [
        "",
        f"algorithm review (policy in force: {approvals} approvals from {organizations} "
        "organizations):",
    ]
    if not report.submissions:
        lines.append("  no submissions")
    for s in report.submissions:
        lines.append(
            f"  {s.submission[:12]} entry {s.index} {s.state.upper()}: {s.name} {s.version} "
            f"{s.image} submitted by {s.submitter} ({s.org})"
        )
        for r in s.reviews:
            later = (
                f" [reviewer revoked at entry {r.reviewer_revoked}]"
                if r.reviewer_revoked is not None
                else ""
            )
            note = f": {r.note[:80]}" if r.note else ""
            lines.append(
                f"      entry {r.index:>6}  {r.decision:<8} {r.reviewer} ({r.org}){later}{note}"
            )
    lines += ["", "runs of images not approved at the time:"]
    if not report.unreviewed:
        lines.append("  none")
    for u in report.unreviewed:
        lines.append(
            f"  {u.task[:12]} entry {u.index} at {u.site} (result entry {u.result}, {u.state}): "
            f"{u.image} ran {u.ran or 'an unnamed digest'}: {u.why}"
        )
    return lines
