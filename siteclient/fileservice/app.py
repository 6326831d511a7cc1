"""The FileService: members send this site files directly, and each receipt becomes a signed
``transfer`` event in the ledger (DESIGN 8). ``create_file_app`` wires it; ``siteclient
serve-files`` serves it (:mod:`siteclient.fileservice.serve`).

::

    PUT /v1/files/{task}/{sha256}[?name=<output name>]   the file, application/octet-stream
    GET /healthz                                          liveness and the verified ledger size

An upload is checked in this order; every refusal is an RFC 9457 problem document, and every
refusal but a registry that cannot be reached in step 9 keeps nothing (no bytes, no receipt, no
event):

1. **Signature** (:mod:`api.wire.httpsig`, the registry's profile): method, target URI, ``created``
   and
   ``Content-Digest`` signed by the key of a *current* member of the site's verified ledger view;
   fresh, never seen before (replay cache), and not older than this process. 401 otherwise. The
   target URI is rebuilt from the configured public URL, never from the Host header, so a
   request signed for another site's FileService cannot be replayed here.
2. **Role**: auditors observe and never send: 403. Any other current member may send.
3. **Task**: it must be in the verified ledger (after a short wait for this follower to catch up
   with a task the sender has just seen): 404.
4. **Request**: ``task`` and ``sha256`` are 64 lowercase hex digits, ``name`` (optional) matches
   ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` and is only ever metadata, no other query parameter,
   ``Content-Type: application/octet-stream`` (400, 415); the signed digest is sha-256 and names
   the path's hash (400 ``digest-mismatch``).
5. **Size**: a ``Content-Length`` is required (411) and at most ``max_file_bytes`` (413), checked
   before a byte is read; the count is checked again while streaming.
6. **Same file again**: when (task, sha256) was already received, 200 with the existing receipt
   (whoever sends it; the first sender and name stay).
7. **Disk**: storing the file must leave ``min_free_bytes`` free on the inbox's file system
   (``shutil.disk_usage``, before and while streaming; a write failing with ENOSPC too): 507.
8. **Bytes**: streamed into the inbox (temp file, fsync, rename) while hashed; a hash other than
   the path's: 400 ``digest-mismatch``.
9. **Record**: a pending receipt holding the signed ``transfer`` event (sender = the
   authenticated member, recipient = this site, task, sha256, size) is written, the event is
   appended at the registry, and the receipt records its index: 201 with that index. A registry
   that cannot be reached leaves the receipt pending (503, retry: the same event is posted again,
   and the registry appends it once); a registry that refuses the event: 500, nothing kept.

Known limit: waitress reads a whole request body (spilling to a temp file above 512 KiB) before
the application sees it, so an unauthenticated client can make it buffer up to ``max_file_bytes``
per connection; ``serve-files`` caps the body size and the connections accordingly.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import math
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import falcon

from api.client.transport import normalize_base_url
from api.errors import ApiError, ServerError, TransportError
from api.wire import problems
from api.wire.accesslog import AccessLog
from api.wire.httpsig import (
    DEFAULT_SKEW,
    DEFAULT_WINDOW,
    ReplayCache,
    RequestVerifier,
    ServerMessage,
    raw_target_from_wsgi,
)
from api.wire.problems import Problem
from crypto import KeyId, PublicKey, SigningKey
from ledger.bodies import OUTPUT_NAME, Role
from ledger.errors import BlobError
from siteclient.errors import RaceError, StateError
from siteclient.fileservice.inbox import Inbox, InboxEntry
from siteclient.fileservice.transfers import EventPoster, TransferRecorder
from siteclient.fileservice.view import LedgerView, Sender

log = logging.getLogger("siteclient.fileservice")

OCTETS = "application/octet-stream"
CHUNK = 1024 * 1024
HEX64 = re.compile(r"[0-9a-f]{64}")
SIGNED_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")
SENDING_ROLES = frozenset({Role.ADMIN, Role.RESEARCHER, Role.SITE})


@dataclass(frozen=True, slots=True, kw_only=True)
class FileLimits:
    max_file_bytes: int = 256 * 1024 * 1024
    min_free_bytes: int = 64 * 1024 * 1024


class Views(Protocol):
    """Where the app reads the verified ledger (:class:`siteclient.fileservice.view.ViewBoard`)."""

    @property
    def halted(self) -> str | None: ...

    def current(self) -> LedgerView | None: ...

    def wait_for_task(self, task: str, timeout: float) -> LedgerView | None: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def free_bytes(path: Path) -> int:
    """Free bytes on the file system of ``path`` (for unprivileged writers)."""
    return shutil.disk_usage(path).free


def create_file_app(
    *,
    site: str,
    key: SigningKey,
    views: Views,
    inbox: Inbox,
    client: EventPoster,
    public_url: str,
    clock: Callable[[], float],
    limits: FileLimits | None = None,
    free_space: Callable[[Path], int] = free_bytes,
    catch_up_s: float = 2.0,
    signature_window: int = DEFAULT_WINDOW,
) -> falcon.App[falcon.Request, falcon.Response]:
    """The FileService of ``site`` (signing transfers with ``key``), receiving into ``inbox``.

    ``public_url`` (``scheme://host[:port]``) is the origin members sign their requests for.
    Requests signed before the app was created are refused, so a restart reopens no replay window.
    """
    verifier = RequestVerifier(
        _lookup(views),
        clock=clock,
        window=signature_window,
        skew=DEFAULT_SKEW,
        not_before=math.ceil(clock()),
        replay=ReplayCache(),
    )
    files = Files(
        site=site,
        views=views,
        inbox=inbox,
        recorder=TransferRecorder(site=site, key=key, inbox=inbox, client=client, clock=clock),
        verifier=verifier,
        public_url=normalize_base_url(public_url),
        limits=limits or FileLimits(),
        free_space=free_space,
        catch_up_s=catch_up_s,
    )
    app = falcon.App(middleware=[AccessLog()], media_type=falcon.MEDIA_JSON)
    app.req_options.strip_url_path_trailing_slash = False
    problems.register(app)
    app.add_route("/healthz", Health(site, views))
    app.add_route("/v1/files/{task}/{sha256}", files)
    return app


def _lookup(views: Views) -> Callable[[KeyId], PublicKey | None]:
    def lookup(key_id: KeyId) -> PublicKey | None:
        view = views.current()
        sender = None if view is None else view.senders.get(key_id)
        return None if sender is None else sender.public_key

    return lookup


class Health:
    def __init__(self, site: str, views: Views) -> None:
        self._site = site
        self._views = views

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        view = _view(self._views)
        resp.media = {"status": "ok", "site": self._site, "ledger_size": view.size}


def _view(views: Views, view: LedgerView | None = None) -> LedgerView:
    view = view if view is not None else views.current()
    if view is None:
        reason = views.halted or "the ledger is not verified yet"
        raise Problem("unavailable", f"not accepting files: {reason}", headers={"Retry-After": "5"})
    return view


class Files:
    """``PUT /v1/files/{task}/{sha256}``: receive one file (see the module docstring)."""

    def __init__(
        self,
        *,
        site: str,
        views: Views,
        inbox: Inbox,
        recorder: TransferRecorder,
        verifier: RequestVerifier,
        public_url: str,
        limits: FileLimits,
        free_space: Callable[[Path], int],
        catch_up_s: float,
    ) -> None:
        self._site = site
        self._views = views
        self._inbox = inbox
        self._recorder = recorder
        self._verifier = verifier
        self._public_url = public_url
        self._limits = limits
        self._free_space = free_space
        self._catch_up_s = catch_up_s

    def on_put(self, req: falcon.Request, resp: falcon.Response, task: str, sha256: str) -> None:
        sender, signed_sha256 = self._authenticate(req)
        view = self._admit(sender, task)
        name = _check_request(req, sha256, signed_sha256)
        length = self._check_size(req)
        existing = self._inbox.find(task, sha256)
        if existing is not None and existing.recorded:
            _answer(resp, existing, created=False)
            return
        self._check_room(length, length)
        self._store(req.bounded_stream, task, sha256, length)
        entry, created = self._record(view, sender, task, sha256, size=length, name=name)
        _answer(resp, entry, created=created)

    def _authenticate(self, req: falcon.Request) -> tuple[Sender, str]:
        message = ServerMessage(
            method=req.method,
            url=self._public_url + raw_target_from_wsgi(req.env),
            headers=req.headers,
        )
        verified = self._verifier.verify(message, None)
        view = _view(self._views)
        sender = view.senders.get(verified.key_id)
        if sender is None:  # revoked between verification and now
            raise Problem("unknown-key", f"key {verified.key_id[:16]} is no longer a member's")
        req.context.member = sender  # for the access log
        match = SIGNED_DIGEST.fullmatch((verified.digest or "").strip())
        if match is None:
            raise Problem(
                "digest-mismatch", "an upload needs a signed Content-Digest of exactly sha-256"
            )
        return sender, base64.b64decode(match.group(1)).hex()

    def _admit(self, sender: Sender, task: str) -> LedgerView:
        if sender.role not in SENDING_ROLES:
            raise Problem(
                "forbidden", f"{sender.name!r} has role {sender.role.value}; auditors send no files"
            )
        if not HEX64.fullmatch(task):
            raise Problem("invalid-parameter", "task: expected 64 lowercase hex digits")
        view = _view(self._views)
        if task not in view.tasks:
            view = _view(self._views, self._views.wait_for_task(task, self._catch_up_s))
        if task not in view.tasks:
            raise Problem("not-found", f"no task {task} in the ledger (verified to {view.size})")
        if not view.receiver_active:
            raise Problem(
                "unavailable",
                f"{self._site!r} is not a current site member; it cannot record transfers",
            )
        return view

    def _check_size(self, req: falcon.Request) -> int:
        length = req.content_length
        if length is None:
            raise Problem("length-required", "an upload needs a Content-Length")
        limit = self._limits.max_file_bytes
        if length > limit:
            raise Problem("body-too-large", f"the file is {length} bytes; at most {limit} here")
        return length

    def _check_room(self, remaining: int, length: int) -> None:
        free = self._free_space(self._inbox.root)
        reserve = self._limits.min_free_bytes
        if free - remaining < reserve:
            raise Problem(
                "insufficient-storage",
                f"a file of {length} bytes would leave less than {reserve} bytes free here",
            )

    def _store(self, stream: Readable, task: str, sha256: str, length: int) -> None:
        chunks = self._receive(stream, sha256, length)
        try:
            self._inbox.blobs(task).put_stream(chunks, sha256, self._limits.max_file_bytes)
        except BlobError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Problem("insufficient-storage", "the inbox's disk is full") from exc
            if isinstance(cause, OSError):
                log.error("cannot store an upload for task %s: %s", task[:16], exc)
                raise Problem("internal-error") from exc
            raise Problem("digest-mismatch", str(exc)) from exc

    def _receive(self, stream: Readable, sha256: str, length: int) -> Iterator[bytes]:
        """The body's chunks, checked on the way: size, room on disk, and, once whole, hash."""
        digest = hashlib.sha256()
        size = 0
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > length or size > self._limits.max_file_bytes:
                raise Problem("body-too-large", f"the body is longer than the {length} declared")
            self._check_room(length - size, length)
            digest.update(chunk)
            yield chunk
        if size != length:
            raise Problem("bad-request", f"the body ended after {size} of {length} bytes")
        if digest.hexdigest() != sha256:
            raise Problem(
                "digest-mismatch",
                f"the bytes received hash to sha256 {digest.hexdigest()}, not {sha256}",
            )

    def _record(
        self,
        view: LedgerView,
        sender: Sender,
        task: str,
        sha256: str,
        *,
        size: int,
        name: str | None,
    ) -> tuple[InboxEntry, bool]:
        try:
            return self._recorder.record(
                origin=view.origin,
                sender=sender.name,
                task=task,
                sha256=sha256,
                size=size,
                name=name,
            )
        except RaceError as exc:
            raise Problem("unavailable", str(exc), headers={"Retry-After": "1"}) from exc
        except StateError as exc:
            log.error("cannot write a receipt: %s", exc)
            raise Problem("insufficient-storage", "cannot write the receipt here") from exc
        except (TransportError, ServerError) as exc:
            raise Problem(
                "unavailable",
                "the file is kept, but the registry has not recorded its transfer yet; send it "
                "again",
                headers={"Retry-After": "2"},
            ) from exc
        except ApiError as exc:  # the registry refused the transfer (logged by the recorder)
            raise Problem("internal-error") from exc


def _check_request(req: falcon.Request, sha256: str, signed_sha256: str) -> str | None:
    if not HEX64.fullmatch(sha256):
        raise Problem("invalid-parameter", "sha256: expected 64 lowercase hex digits")
    for param, value in req.params.items():
        if param != "name":
            raise Problem("invalid-parameter", f"unknown query parameter {param[:40]!r}")
        if not isinstance(value, str):
            raise Problem("invalid-parameter", "query parameter 'name' is given more than once")
    name = req.get_param("name")
    if name is not None and not OUTPUT_NAME.fullmatch(name):
        raise Problem(
            "invalid-parameter",
            "name: expected 1-128 characters of A-Z, a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit",
        )
    found = (req.content_type or "").split(";", 1)[0].strip().lower()
    if found != OCTETS:
        raise Problem("unsupported-media-type", f"expected {OCTETS}, found {found[:60] or 'none'}")
    if signed_sha256 != sha256:
        raise Problem(
            "digest-mismatch",
            f"the signed Content-Digest is sha-256 {signed_sha256}, the path names {sha256}",
        )
    return name


def _answer(resp: falcon.Response, entry: InboxEntry, *, created: bool) -> None:
    resp.status = falcon.HTTP_201 if created else falcon.HTTP_200
    resp.location = f"/v1/files/{entry.task}/{entry.sha256}"
    resp.media = {
        "task": entry.task,
        "sha256": entry.sha256,
        "size": entry.size,
        "sender": entry.sender,
        "name": entry.name,
        "received": entry.received,
        "transfer_index": entry.transfer_index,
        "event_id": entry.transfer.event.id,
    }
