"""The fix to add to an error the CLI prints, when the error alone does not say it.

The library errors say what went wrong; only the CLI knows which flag or file the user gave, so
the hint naming it is added here, at the one error funnel (:func:`cli.main.main`).
"""

from __future__ import annotations

from api.errors import (
    ApiError,
    NotFoundError,
    ProblemError,
    RuleViolationError,
    TransportError,
    UnauthenticatedError,
)


def hint(exc: Exception) -> str:
    """A short sentence to append to ``exc``'s message (empty when it needs none)."""
    if not isinstance(exc, ApiError):
        return ""
    if isinstance(exc, TransportError):
        return (
            "; is `pht serve` running there? check --registry or the profile (`pht profile show`)"
        )
    if isinstance(exc, ProblemError) and not exc.slug:
        return (
            "; that server answered, but not as a PHT registry: check --registry or the profile "
            "(`pht profile show`; `pht serve` listens on port 8555 by default)"
        )
    if isinstance(exc, NotFoundError) and exc.detail in ("", exc.title):
        return (
            "; no such path on this registry: give --registry as its base URL "
            "(scheme://host:port, e.g. http://127.0.0.1:8555)"
        )
    if isinstance(exc, RuleViolationError) and "only an admin may" in exc.detail:
        return " (an admin's action: pass the admin's key, e.g. --key admin.key)"
    if isinstance(exc, UnauthenticatedError) and exc.slug == "unknown-key":
        return " (check --key or the profile's key, and --registry)"
    return ""
