"""The registry's HTTP resources (DESIGN 6): each parses, calls one ledger method, answers.

Authentication, body limits and the body itself come from :mod:`api.registry.auth`
(``req.context.body``,
``req.context.member``); errors become problem documents in :mod:`api.wire.problems`. Entries are
served
as the canonical bytes the ledger stored, spliced into the response without re-encoding, so what a
follower hashes is exactly what was appended.

Class attributes read by the authenticator:

- ``body_limit``: the largest request body accepted (bytes), or ``STREAMED`` for a resource that
  reads its body itself and checks it against the signed ``Content-Digest`` (blobs);
- ``writers``: the roles that may POST/PUT here (None: any current member).
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import falcon

from api.wire.pages import entries_page
from api.wire.problems import Problem
from ledger.bodies import Role
from ledger.events import SignedEvent
from ledger.store.ledger import Ledger

JSON = "application/json"
OCTETS = "application/octet-stream"
MAX_INDEX = 2**63 - 1
HEX64 = re.compile(r"[0-9a-f]{64}")
# Whole numbers as the API writes them: ASCII digits, no sign, spaces or leading zeros. (int()
# alone would also take "+1", " 1", "1_0" and other scripts' digits, so many spellings of one URL.)
WHOLE = re.compile(r"0|[1-9][0-9]{0,18}")
STREAMED = -1


def only_params(req: falcon.Request, allowed: Iterable[str]) -> None:
    """Refuse unknown and repeated query parameters (a typo must not silently read from 0)."""
    known = set(allowed)
    for name, value in req.params.items():
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            raise Problem(
                "invalid-parameter",
                f"unknown query parameter {name[:40]!r}; expected: {expected}",
            )
        if isinstance(value, list):
            raise Problem("invalid-parameter", f"query parameter {name!r} is given more than once")


def int_param(req: falcon.Request, name: str, **bounds: Any) -> int:
    """``req.get_param_as_int`` for a parameter written as the API writes whole numbers."""
    text = req.get_param(name)
    if text is not None and not WHOLE.fullmatch(text):
        raise falcon.HTTPInvalidParam(
            f"expected a whole number in ASCII digits without sign or leading zeros, "
            f"found {text[:40]!r}",
            name,
        )
    return req.get_param_as_int(name, **bounds)  # type: ignore[no-any-return]


def require_content_type(req: falcon.Request, expected: str) -> None:
    found = (req.content_type or "").split(";", 1)[0].strip().lower()
    if found != expected:
        raise Problem(
            "unsupported-media-type",
            f"expected Content-Type {expected}, found {found[:60] or 'none'}",
        )


def hex64(value: str, what: str) -> str:
    if not HEX64.fullmatch(value):
        raise Problem("invalid-parameter", f"{what}: expected 64 lowercase hex digits")
    return value


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class LongPollGate:
    """At most ``slots`` requests may wait at once; the others answer at once.

    Waitress serves requests from a fixed pool of threads; a long-poll holds one for up to 30 s.
    Keeping ``slots`` below the pool size leaves threads for appends, which are what wakes the
    waiters in the first place. ``stop`` ends every wait (shutdown).
    """

    def __init__(self, slots: int, stop: threading.Event) -> None:
        self._free = threading.BoundedSemaphore(max(0, slots)) if slots > 0 else None
        self.stop = stop

    def wait(self, ledger: Ledger, size: int, seconds: float) -> bool | None:
        """Wait until the ledger holds more than ``size`` entries; None when no slot was free."""
        if self._free is None or not self._free.acquire(blocking=False):
            return None
        try:
            deadline = time.monotonic() + seconds
            while not self.stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # Slices bound how long shutdown waits; an append wakes the waiter at once.
                if ledger.wait_for(size, min(remaining, 1.0)):
                    return True
            return False
        finally:
            self._free.release()


class Health:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        ledger = self._ledger
        resp.data = json_bytes(
            {"status": "ok", "size": ledger.size, "integrator": ledger.integrating}
        )
        resp.content_type = JSON


class Ready:
    """``GET /readyz``: whether this process can answer from its store now (a load balancer's
    readiness check; ``/healthz`` only says the process is up). A replica whose database is gone,
    or that is recovering from a failed write, answers 503 ``store-unavailable``; it catches up
    with the other replicas first, as any read past what it serves does."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        ledger = self._ledger
        ledger.sync()
        resp.data = json_bytes(
            {"status": "ready", "size": ledger.size, "integrator": ledger.integrating}
        )
        resp.content_type = JSON
        resp.cache_control = ["no-store"]


class OpenApi:
    def __init__(self, document: bytes) -> None:
        self._document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        resp.data = self._document
        resp.content_type = JSON


class CheckpointResource:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        resp.data = self._ledger.checkpoint()
        resp.content_type = "text/plain; charset=utf-8"
        resp.cache_control = ["no-store"]


class Events:
    """``GET /v1/events`` (a page of entries, long-polling for the next) and ``POST`` (append).

    ``from`` may be at most the ledger's size: ``from`` equal to the size is how a follower waits
    for the next entry (with ``wait``); a larger ``from`` names entries that do not exist yet, so
    it is refused with 416 ``range-not-satisfiable`` naming the size, rather than answered with an
    empty page (which a follower holding a longer history than the registry now serves would
    read as "nothing new", and poll again at once). Clients ask from a size or a ``next`` the
    registry itself answered, never beyond.
    """

    body_limit: int
    writers: ClassVar[frozenset[Role] | None] = None  # the rules decide who may post what

    def __init__(
        self,
        ledger: Ledger,
        gate: LongPollGate,
        *,
        body_limit: int,
        max_limit: int = 1000,
        max_wait: int = 30,
        max_page_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._ledger = ledger
        self._gate = gate
        self.body_limit = body_limit
        self._max_limit = max_limit
        self._max_wait = max_wait
        self._max_page_bytes = max_page_bytes

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ("from", "limit", "wait"))
        start = int_param(req, "from", default=0, min_value=0, max_value=MAX_INDEX)
        limit = int_param(req, "limit", default=100, min_value=1, max_value=self._max_limit)
        wait = int_param(req, "wait", default=0, min_value=0, max_value=self._max_wait)
        if start > self._ledger.size or (start == self._ledger.size and not wait):
            # A replica behind the one that served the reader's checkpoint catches up first (a
            # long-poll at the head is woken by the catch-up the database's notice starts).
            self._ledger.sync()
        if start > (size := self._ledger.size):
            raise Problem(
                "range-not-satisfiable",
                f"from={start} is beyond the ledger's size {size}: entries are 0..{size - 1}; "
                f"ask from={size} with wait=S to wait for the next one",
            )
        waiting = wait and start == size
        if waiting and self._gate.wait(self._ledger, start, wait) is None:
            resp.retry_after = 1  # no waiting slot free: ask the follower to come back
        entries = self._bounded(self._ledger.entries_bytes(start, limit))
        # The page's layout is the wire's (api.wire.pages): the auditor cuts it back into each
        # entry's exact stored bytes.
        resp.data = entries_page(entries, start + len(entries), self._ledger.size)
        resp.content_type = JSON

    def _bounded(self, entries: list[bytes]) -> list[bytes]:
        total = 0
        for count, data in enumerate(entries):
            total += len(data) + 1
            if total > self._max_page_bytes and count:
                return entries[:count]
        return entries

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ())
        require_content_type(req, JSON)
        signed = SignedEvent.from_json(req.context.body)
        result = self._ledger.append(signed)
        entry = result.entry
        resp.status = falcon.HTTP_201 if result.created else falcon.HTTP_200
        resp.location = f"/v1/events/{entry.index}"
        resp.data = json_bytes(
            {
                "index": entry.index,
                "event_id": signed.event.id,
                "hash": entry.hash,
                "received": entry.received,
            }
        )
        resp.content_type = JSON


class EventResource:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response, index: str) -> None:
        only_params(req, ())
        if not WHOLE.fullmatch(index):
            raise Problem(
                "not-found", f"no entry {index[:40]!r}: entries are numbered 0, 1, 2, ..."
            )
        number = int(index)
        if number >= self._ledger.size:
            self._ledger.sync()
        if number >= (size := self._ledger.size):
            raise Problem("not-found", f"entry {number} does not exist; the ledger has {size}")
        resp.data = self._ledger.entry_bytes(number)
        resp.content_type = JSON


class InclusionProof:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ("index", "size"))
        index = int_param(req, "index", required=True, min_value=0, max_value=MAX_INDEX)
        size = int_param(req, "size", required=True, min_value=1, max_value=MAX_INDEX)
        proof = self._ledger.inclusion_proof(index, size)
        resp.data = json_bytes({"index": index, "size": size, "proof": [h.hex() for h in proof]})
        resp.content_type = JSON


class ConsistencyProof:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        only_params(req, ("from", "to"))
        old = int_param(req, "from", required=True, min_value=0, max_value=MAX_INDEX)
        new = int_param(req, "to", required=True, min_value=0, max_value=MAX_INDEX)
        proof = self._ledger.consistency_proof(old, new)
        resp.data = json_bytes({"from": old, "to": new, "proof": [h.hex() for h in proof]})
        resp.content_type = JSON


class Blob:
    """``PUT``/``GET /v1/blobs/{sha256}``: content-addressed bytes, streamed both ways.

    A PUT is signed like any request; its ``Content-Digest`` (sha-256) must name the same hash as
    the path, and the store checks the streamed bytes against it, so the signed digest, the path
    and the stored bytes all agree without holding the upload in memory. A GET hashes the stored
    file through before answering (about 2.5 ms for 4 MiB, 40 ms for 64 MiB; bench/api_bench.py):
    a blob whose bytes no longer match its name is answered ``store-damaged``, never sent.
    """

    body_limit = STREAMED
    writers: ClassVar[frozenset[Role] | None] = frozenset({Role.ADMIN, Role.RESEARCHER, Role.SITE})

    def __init__(self, ledger: Ledger, *, max_blob: int) -> None:
        self._blobs = ledger.blobs
        self.max_blob = max_blob

    def on_put(self, req: falcon.Request, resp: falcon.Response, sha256: str) -> None:
        only_params(req, ())
        hex64(sha256, "blob name")
        require_content_type(req, OCTETS)
        signed = req.context.body_sha256
        if signed != sha256:
            raise Problem(
                "blob-mismatch",
                f"the signed Content-Digest is sha-256 {signed}, but the path names {sha256}",
            )
        existed = self._blobs.exists(sha256)
        _, size = self._blobs.put_stream(req.bounded_stream, sha256, self.max_blob)
        resp.status = falcon.HTTP_200 if existed else falcon.HTTP_201
        resp.location = f"/v1/blobs/{sha256}"
        resp.data = json_bytes({"sha256": sha256, "size": size})
        resp.content_type = JSON

    def on_get(self, req: falcon.Request, resp: falcon.Response, sha256: str) -> None:
        only_params(req, ())
        hex64(sha256, "blob name")
        if not self._blobs.exists(sha256):
            raise Problem("not-found", f"no blob {sha256} is stored")
        # Hashed through before the headers go (DamagedBlobError: store-damaged), so a damaged
        # blob is never sent under a Content-Digest naming its old hash.
        stream = self._blobs.open_verified(sha256)
        size = stream.seek(0, os.SEEK_END)  # a file, or the database's bytes in memory
        stream.seek(0)
        resp.set_stream(stream, size)
        resp.content_type = OCTETS
        digest = base64.b64encode(bytes.fromhex(sha256)).decode()
        resp.set_header("Content-Digest", f"sha-256=:{digest}:")
        resp.etag = f'"{sha256}"'
        resp.cache_control = ["private", "max-age=31536000", "immutable"]


class TaskResource:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response, event_id: str) -> None:
        only_params(req, ())
        view = self._ledger.task_view(hex64(event_id, "task event id"))
        resp.data = json_bytes(view)
        resp.content_type = JSON
