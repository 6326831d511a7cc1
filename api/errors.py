"""Errors raised by :mod:`api`: the client's view of the registry, and refused request signatures.

::

    ApiError
    ├── AnalysisError            the Analyst: a task did not finish in time, or a result
    │                            cannot be read (a missing output, a wrong key)
    ├── RequestAuthError         the registry refuses a request's HTTP message signature
    │                            (server side; ``slug`` names the problem type it becomes)
    ├── HeartbeatRefused         the registry refuses a site's heartbeat (server side, the
    │                            presence table; ``slug`` names the problem type it becomes)
    ├── TransportError           the registry could not be reached or did not answer in time
    │                            (after the client's retries)
    ├── ProtocolError            the registry answered with something the protocol does not allow
    │                            (not JSON, missing fields, a blob whose bytes miss their hash)
    └── ProblemError             the registry answered with an RFC 9457 problem document
        ├── UnauthenticatedError     401: no valid signature by a current member's key
        ├── ForbiddenError           403: a current member, but not allowed to do this
        │   └── RuleViolationError   403 ``rule-violation``: the ledger's rules refuse the event
        ├── ResultExistsError        409 ``result-exists``: this site's result is already in
        │                            the ledger (a repost after a crash, for instance)
        ├── NotFoundError            404: no such entry, blob, task or path
        ├── InvalidRequestError      400, 405, 409, 413, 415, 416, 422: the request itself is wrong
        │                            (``malformed-event``, ``bad-signature``, ``invalid-parameter``,
        │                            ``body-too-large``, ``blob-mismatch``, ``blob-missing``,
        │                            ``event-time-out-of-window``, ``range-not-satisfiable``, ...)
        └── ServerError              5xx: the registry failed (``store-unavailable``, ...)

Foreign exceptions (requests, http-message-signatures) are translated where they occur, with
``from exc``; nothing foreign escapes this package.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://pht.example/problems/"


class ApiError(Exception):
    """Root of every error raised by the api package."""


class AnalysisError(ApiError):
    """A task did not finish in time, or a result cannot be read."""


class RequestAuthError(ApiError):
    """A request signature the registry refuses; ``slug`` is the problem type it maps to."""

    def __init__(self, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.slug = slug
        self.detail = detail


class HeartbeatRefused(ApiError):
    """A heartbeat the presence table refuses; ``slug`` is the problem type it maps to."""

    def __init__(self, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.slug = slug
        self.detail = detail


class TransportError(ApiError):
    """The registry could not be reached, or did not answer within the timeout."""


class ProtocolError(ApiError):
    """The registry's answer does not follow the protocol."""


class ProblemError(ApiError):
    """The registry answered with a problem document (RFC 9457).

    ``slug`` is the last path segment of the problem ``type`` (``rule-violation``), or ``""`` when
    the type is not one of ours; ``problem`` holds the whole document.
    """

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type", "about:blank"))
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", ""))
        ours = self.type.startswith(PROBLEM_BASE)
        self.slug = self.type.removeprefix(PROBLEM_BASE) if ours else ""
        reason = self.detail or self.title or "no detail given"
        super().__init__(f"registry answered {status} {self.slug or self.type}: {reason}")


class UnauthenticatedError(ProblemError):
    """401: the request was not signed by a current member's key (or the signature was refused)."""


class ForbiddenError(ProblemError):
    """403: the signer is a current member but may not do this."""


class RuleViolationError(ForbiddenError):
    """403 ``rule-violation``: the ledger's rules refuse this event."""


class ResultExistsError(ProblemError):
    """409 ``result-exists``: the site already posted a result for this task."""


class NotFoundError(ProblemError):
    """404: no such entry, blob, task or path."""


class InvalidRequestError(ProblemError):
    """4xx other than 401/403/404: the request itself is malformed or too large."""


class ServerError(ProblemError):
    """5xx: the registry failed to handle a well-formed request."""


def problem_error(status: int, problem: dict[str, Any]) -> ProblemError:
    """The exception for a problem document received with HTTP ``status``."""
    cls: type[ProblemError]
    if status == 401:
        cls = UnauthenticatedError
    elif status == 403:
        slug = str(problem.get("type", "")).removeprefix(PROBLEM_BASE)
        cls = RuleViolationError if slug == "rule-violation" else ForbiddenError
    elif status == 404:
        cls = NotFoundError
    elif status == 409 and problem.get("type") == PROBLEM_BASE + "result-exists":
        cls = ResultExistsError
    elif status >= 500:
        cls = ServerError
    else:
        cls = InvalidRequestError
    return cls(status, problem)
