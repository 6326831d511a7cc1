"""Every error the registry answers with, as an RFC 9457 problem document; the one mapping module.

A problem is ``application/problem+json``::

    {"type": "https://pht.example/problems/rule-violation", "title": "Rule violation",
     "status": 403, "detail": "entry 12 (task): 'bob' is a site, only researcher may post this"}

The ``type`` URIs are stable (clients switch on them; :data:`PROBLEMS` lists every one). ``detail``
says what was expected and what was found for client errors; for server errors it is generic, and
the exception with its traceback goes only to the server log: no stack trace, path or internal
message ever reaches a client.

Mapping (the handlers below, registered by :func:`register`):

======================================  =====  ============================
raised                                  status type
======================================  =====  ============================
ledger EncodingError, FormatError       400    malformed-event
  (InvalidReferenceError: a task's image no site can parse)
ledger SignatureError                   422    bad-signature
ledger CosignatureError                 422    bad-cosignature
ledger DuplicateResultError            409    result-exists
ledger RuleViolation                    403    rule-violation
ledger EventTimeError                   422    event-time-out-of-window
ledger ProofError                       400    invalid-proof-request
ledger MissingBlobError                 409    blob-missing
ledger BlobError                        422    blob-mismatch
ledger TileEntryTooLargeError           422    tile-entry-too-large
LookupError (unknown task, ...)         404    not-found
ledger DamagedError                     500    store-damaged
ledger StoreError                       503    store-unavailable
other LedgerError, any other exception  500    internal-error
api RequestAuthError                    401    its slug (unauthenticated, ...)
falcon HTTPError                        its    by status (not-found, invalid-parameter, ...)
======================================  =====  ============================

The resources answer ``range-not-satisfiable`` themselves (416, a page of entries asked from
beyond the ledger's size), and the heartbeat resource its own three types
(``malformed-heartbeat`` 400, ``heartbeat-stale`` 409, ``heartbeat-from-the-future`` 422;
:mod:`api.registry.presence`).

Why these statuses: ``blob-missing`` is 409 because the event conflicts with the registry's
current state, not with the protocol (upload the blob, then post the *same* signed event again);
``event-time-out-of-window`` is 422 because the event is well-formed and signed but its content
is unacceptable (sign it again with the current time); ``range-not-satisfiable`` is 416 because
``from`` asks for a range that starts beyond what exists (a long-poll from exactly the size is
fine; a larger ``from`` means the client holds a view the registry never served, or a typo);
``store-damaged`` is 500 without ``Retry-After`` because stored bytes that no longer hash to what
the registry signed (an entry's leaf hash, a blob's name) are not served and will not heal by
waiting: an operator restores the data directory (its detail names the entry or blob only).
``tile-entry-too-large`` is 422: the tile named exists in the log, but the C2SP entry bundle
format cannot carry one of its entries (a client reads those entries as pages).

The site's FileService (``siteclient.fileservice.app``) answers with the same documents and adds two
types of its own: ``digest-mismatch`` (400, the bytes received do not hash to the signed digest)
and ``insufficient-storage`` (507, storing the file would leave too little free disk).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import falcon

from api.errors import PROBLEM_BASE, RequestAuthError
from api.wire.httpsig import accept_signature
from ledger.errors import (
    BacklogError,
    BlobError,
    CosignatureError,
    DamagedError,
    DuplicateResultError,
    EncodingError,
    EventTimeError,
    FormatError,
    LedgerError,
    MissingBlobError,
    ProofError,
    RuleViolation,
    SignatureError,
    StoreError,
    TileEntryTooLargeError,
)

log = logging.getLogger("pht.api")

PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True, slots=True)
class ProblemType:
    slug: str
    status: int
    title: str

    @property
    def uri(self) -> str:
        return PROBLEM_BASE + self.slug


PROBLEMS: dict[str, ProblemType] = {
    p.slug: p
    for p in (
        ProblemType("bad-request", 400, "Bad request"),
        ProblemType("invalid-parameter", 400, "Invalid parameter"),
        ProblemType("malformed-event", 400, "Malformed event"),
        ProblemType("malformed-heartbeat", 400, "Malformed heartbeat"),
        ProblemType("invalid-proof-request", 400, "Invalid proof request"),
        ProblemType("digest-mismatch", 400, "Content does not match its digest"),
        ProblemType("unauthenticated", 401, "Unauthenticated"),
        ProblemType("unknown-key", 401, "Unknown key"),
        ProblemType("signature-expired", 401, "Signature expired"),
        ProblemType("request-replayed", 401, "Request replayed"),
        ProblemType("forbidden", 403, "Forbidden"),
        ProblemType("rule-violation", 403, "Rule violation"),
        ProblemType("result-exists", 409, "This site already posted a result for this task"),
        ProblemType("heartbeat-stale", 409, "Not newer than this site's latest heartbeat"),
        ProblemType("not-found", 404, "Not found"),
        ProblemType("method-not-allowed", 405, "Method not allowed"),
        ProblemType("not-acceptable", 406, "Not acceptable"),
        ProblemType("blob-missing", 409, "A named blob was never uploaded"),
        ProblemType("length-required", 411, "Length required"),
        ProblemType("body-too-large", 413, "Request body too large"),
        ProblemType("uri-too-long", 414, "URI too long"),
        ProblemType("unsupported-media-type", 415, "Unsupported media type"),
        ProblemType("range-not-satisfiable", 416, "Range beyond the ledger's size"),
        ProblemType("bad-signature", 422, "Event signature does not verify"),
        ProblemType("bad-cosignature", 422, "Cosignature refused"),
        ProblemType("blob-mismatch", 422, "Blob does not match its hash"),
        ProblemType("tile-entry-too-large", 422, "An entry is too large for an entry bundle"),
        ProblemType("event-time-out-of-window", 422, "Event time outside the registry's window"),
        ProblemType("heartbeat-from-the-future", 422, "Heartbeat sent_at ahead of the registry"),
        ProblemType("headers-too-large", 431, "Request header fields too large"),
        ProblemType("internal-error", 500, "Internal server error"),
        ProblemType("store-damaged", 500, "Stored data is damaged"),
        ProblemType("not-implemented", 501, "Not implemented"),
        ProblemType("store-unavailable", 503, "Storage unavailable"),
        ProblemType("unavailable", 503, "Service unavailable"),
        ProblemType("insufficient-storage", 507, "Insufficient storage"),
    )
}

# Falcon's own errors (routing, parameters, limits), by status.
_BY_STATUS: dict[int, str] = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    411: "length-required",
    413: "body-too-large",
    414: "uri-too-long",
    415: "unsupported-media-type",
    431: "headers-too-large",
    501: "not-implemented",
    503: "unavailable",
}


def slug_for_status(status: int) -> str:
    """The problem type for an error known only by its status (Falcon's or waitress's own)."""
    return _BY_STATUS.get(status) or ("bad-request" if status < 500 else "internal-error")


class Problem(falcon.HTTPError):
    """An error answered with the problem type ``slug``; raise it from resources."""

    def __init__(
        self, slug: str, detail: str | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        kind = PROBLEMS[slug]
        super().__init__(kind.status, title=kind.title, description=detail, headers=headers)
        self.slug = slug


def problem_body(slug: str, detail: str | None, *, instance: str | None = None) -> dict[str, Any]:
    kind = PROBLEMS[slug]
    body: dict[str, Any] = {"type": kind.uri, "title": kind.title, "status": kind.status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    return body


def _respond(
    resp: falcon.Response,
    slug: str,
    detail: str | None,
    req: falcon.Request,
    headers: dict[str, str] | None = None,
) -> None:
    kind = PROBLEMS[slug]
    resp.status = kind.status
    resp.content_type = PROBLEM_JSON
    body = problem_body(slug, detail, instance=req.path if len(req.path) <= 200 else None)
    resp.media = None
    resp.stream = None
    resp.data = json.dumps(body, ensure_ascii=True).encode("ascii")
    if headers:
        for name, value in headers.items():
            resp.set_header(name, value)


def _http_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, falcon.HTTPError)
    slug = getattr(ex, "slug", None) or _BY_STATUS.get(ex.status_code)
    if slug is None:
        slug = "bad-request" if ex.status_code < 500 else "internal-error"
    if isinstance(ex, falcon.HTTPInvalidParam | falcon.HTTPMissingParam) and slug == "bad-request":
        slug = "invalid-parameter"
    detail = ex.description
    if slug == "internal-error":
        log.error("%s %s: %s", req.method, req.path, ex)
        detail = None
    headers = dict(ex.headers or {})
    if PROBLEMS[slug].status == 401:
        headers.update(_challenge())
    _respond(resp, slug, detail, req, headers)


def _auth_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    assert isinstance(ex, RequestAuthError)
    _respond(resp, ex.slug, ex.detail, req, _challenge())


def _challenge() -> dict[str, str]:
    # RFC 9110 requires a challenge on 401; HTTP message signatures have no registered auth
    # scheme, so the challenge names the profile and Accept-Signature (RFC 9421 5.1) spells it out.
    return {
        "WWW-Authenticate": 'Signature realm="pht", tag="pht/v1/request"',
        "Accept-Signature": accept_signature(),
    }


def _ledger_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    detail: str | None = str(ex)
    headers: dict[str, str] = {}
    if isinstance(ex, CosignatureError):
        slug = "bad-cosignature"
    elif isinstance(ex, EncodingError | FormatError):
        slug = "malformed-event"
    elif isinstance(ex, SignatureError):
        slug = "bad-signature"
    elif isinstance(ex, DuplicateResultError):
        slug = "result-exists"
    elif isinstance(ex, RuleViolation):
        slug = "rule-violation"
    elif isinstance(ex, EventTimeError):
        slug = "event-time-out-of-window"
    elif isinstance(ex, TileEntryTooLargeError):
        slug = "tile-entry-too-large"
    elif isinstance(ex, ProofError):
        slug = "invalid-proof-request"
    elif isinstance(ex, MissingBlobError):
        slug = "blob-missing"
    elif isinstance(ex, BlobError):
        slug = "blob-mismatch"
    elif isinstance(ex, LookupError):
        slug = "not-found"
    elif isinstance(ex, DamagedError):
        # Not transient (no Retry-After): the operator must restore the data. The detail names
        # the entry or blob, never a path; the log line says what was found.
        log.error("%s %s: store damaged, not served: %s", req.method, req.path, ex)
        slug, detail = "store-damaged", f"{ex.subject} is damaged in the registry's store"
    elif isinstance(ex, BacklogError):  # transient by design: say why, ask to come back
        log.warning("%s %s: %s", req.method, req.path, ex)
        slug, detail, headers = "store-unavailable", str(ex), {"Retry-After": "1"}
    elif isinstance(ex, StoreError):
        log.error("%s %s: storage failed: %s", req.method, req.path, ex)
        slug, detail, headers = "store-unavailable", None, {"Retry-After": "1"}
    else:
        log.error("%s %s: %r", req.method, req.path, ex, exc_info=ex)
        slug, detail = "internal-error", None
    _respond(resp, slug, detail, req, headers)


def _lookup_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    _respond(resp, "not-found", str(ex), req)


def _anything(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    log.error("%s %s: unhandled %s", req.method, req.path, type(ex).__name__, exc_info=ex)
    _respond(resp, "internal-error", None, req)


def register(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Install the handlers; Falcon picks the most specific one for each exception."""
    app.add_error_handler(Exception, _anything)
    app.add_error_handler(LookupError, _lookup_error)
    app.add_error_handler(LedgerError, _ledger_error)
    app.add_error_handler(RequestAuthError, _auth_error)
    app.add_error_handler(falcon.HTTPError, _http_error)
