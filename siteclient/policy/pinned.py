"""``siteclient check-image``'s second answer: the same image pinned by digest.

``pht task post --pin-digest`` posts ``REF@sha256:<64 hex>``, and the allowlist matches that whole
familiar form. A pattern written for ``repo:tag`` alone (``127\\.0\\.0\\.1:5000/team/avg:1``) then
refuses every pinned task, permanently and in the ledger, although ``check-image REF`` said
"allowed". :func:`pinned_verdict` answers for the pinned form of a reference given without a
digest (any digest: a placeholder is matched), and names the fix when only the plain form passes.

Pure: the caller prints the lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.reference import ImageRef
from siteclient.policy.allowlist import Allowlist, Decision

DIGEST_SUFFIX = "(@sha256:[0-9a-f]{64})?"
_PLACEHOLDER = "sha256:" + "0" * 64


@dataclass(frozen=True, slots=True, kw_only=True)
class PinnedVerdict:
    """Whether ``REF@sha256:<digest>`` may run; ``lines`` say so for the operator."""

    allowed: bool
    lines: tuple[str, ...]


def pinned_form(ref: ImageRef) -> str:
    """The familiar form ``--pin-digest`` would post, with a placeholder digest."""
    return f"{ref.familiar()}@{_PLACEHOLDER}"


def pinned_verdict(
    allowlist: Allowlist, plain: Decision, *, require_digest: bool
) -> PinnedVerdict | None:
    """The verdict on ``plain.ref`` pinned by digest; None when ``plain`` already names a digest
    (or did not parse): then the first answer is the only one."""
    ref = plain.ref
    if ref is None or ref.digest is not None:
        return None
    pinned = allowlist.decide(pinned_form(ref), require_digest=require_digest)
    shown = f"{ref.familiar()}@sha256:<digest>"
    head = "pinned form (what `pht task post --pin-digest` posts)"
    if pinned.allowed:
        return PinnedVerdict(
            allowed=True,
            lines=(f"{head}: allowed: {shown} by pattern {pinned.matched!r}",),
        )
    lines = [f"{head}: refused: {shown} matches no allowed pattern of site {allowlist.site!r}"]
    if plain.allowed and plain.matched is not None:
        lines.append(
            f"  fix: append {DIGEST_SUFFIX} to pattern {plain.matched!r} in allowed_images, "
            f"i.e. '{plain.matched}{DIGEST_SUFFIX}', then send the site client SIGHUP "
            "(or restart it)"
        )
    return PinnedVerdict(allowed=False, lines=tuple(lines))
