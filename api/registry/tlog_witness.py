"""The registry asks standard witnesses for cosignatures (C2SP ``tlog-witness``, DESIGN 12).

Sites witness by sending their cosignatures (``POST /v1/cosignatures``). A witness run by an
outside party with standard software does not: it waits to be asked. For each witness of the
policy in force that has a URL (``witness <name> <vkey> <url>``), :class:`WitnessCaller` posts
every new checkpoint to ``<url>/add-checkpoint`` (:mod:`ledger.tlog_witness` builds the bytes)
with a consistency proof from the size that witness last cosigned, and hands the answer's lines
to the cosignature book, which takes them only if they are that member's valid cosignatures, as
it does for a cosignature sent to it. A 409 names the size the witness really holds; the caller
asks again once from there. A witness that is down, slow or refusing is logged and asked again
with the next checkpoint; it never holds up an append (the caller is a thread of its own).

The URLs come from the ledger (the admin's witness policy), never from a request. Redirects are
not followed and answers are bounded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import requests

from ledger.checkpoint import Checkpoint
from ledger.errors import CosignatureError, LedgerError
from ledger.store.ledger import Ledger
from ledger.tlog_witness import (
    MAX_RESPONSE,
    SIZE_CONTENT_TYPE,
    add_checkpoint_body,
    parse_cosignatures,
    parse_size,
)

log = logging.getLogger("pht.witness")

TIMEOUT = (2.0, 5.0)  # connect, read


class WitnessCaller:
    """Posts each new checkpoint to the policy's tlog-witnesses, in a thread of its own."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        session: Callable[[], requests.Session] = requests.Session,
        idle: float = 1.0,
    ) -> None:
        self._ledger = ledger
        self._session = session()
        self._idle = idle
        self._stop = threading.Event()
        self._asked: dict[str, int] = {}  # witness -> newest size asked (not asked again)
        self._thread = threading.Thread(target=self._run, name="tlog-witness", daemon=True)

    def start(self) -> WitnessCaller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._session.close()

    def _run(self) -> None:
        seen = 0  # the ledger size last looked at: wake only when it grows (or to stop)
        while not self._stop.is_set():
            if not self._ledger.wait_for(seen, self._idle):
                continue
            seen = self._ledger.size
            try:
                self.ask_all()
            except Exception:  # a bug here must not end witnessing for the registry's life
                log.exception("asking the tlog-witnesses failed")
                self._stop.wait(self._idle)

    def ask_all(self) -> dict[str, int]:
        """Ask every witness with a URL about the latest checkpoint, once per size; returns
        how many cosignature lines each witness asked now gave that the book took."""
        policy = self._ledger.witness_policy()
        if policy is None or not policy.urls or not self._ledger.integrating:
            return {}  # of replicas sharing a ledger, the integrator asks
        note = self._ledger.checkpoint()
        size = Checkpoint.parse_body(note.split(b"\n\n", 1)[0] + b"\n").size
        taken = {}
        for name, url in sorted(policy.urls.items()):
            if self._asked.get(name) == size or self._stop.is_set():
                continue
            if self._ledger.cosignatures.newest(name) >= size:
                continue  # it cosigned this size already (asked before a restart, or it sent)
            self._asked[name] = size
            taken[name] = self._ask(name, url, size, note)
        return taken

    def _ask(self, name: str, url: str, size: int, note: bytes) -> int:
        old = min(self._ledger.cosignatures.newest(name), size)
        for _ in range(2):  # once from what the book knows, once from what the witness says
            try:
                status, content_type, body = self._post(url, old, size, note)
            except (requests.RequestException, OSError) as exc:
                log.warning(
                    "witness %s at %s: %s; asking again at the next checkpoint",
                    name,
                    url,
                    type(exc).__name__,
                )
                return 0
            if status == 409 and content_type == SIZE_CONTENT_TYPE:
                try:
                    held = parse_size(body)
                except CosignatureError as exc:
                    log.warning("witness %s: %s", name, exc)
                    return 0
                if held > size or held == old:
                    log.warning(
                        "witness %s holds size %d, which the registry cannot extend to %d",
                        name,
                        held,
                        size,
                    )
                    return 0
                old = held
                continue
            if status != 200:
                log.warning(
                    "witness %s refused the checkpoint of size %d: HTTP %d %r",
                    name,
                    size,
                    status,
                    body[:200].decode("utf-8", "replace"),  # quoted: the witness's text
                )
                return 0
            return self._take(name, size, body)
        return 0

    def _post(self, url: str, old: int, size: int, note: bytes) -> tuple[int, str, bytes]:
        proof = self._ledger.consistency_proof(old, size) if 0 < old < size else []
        body = add_checkpoint_body(old, proof, note)
        with self._session.post(
            f"{url}/add-checkpoint",
            data=body,
            timeout=TIMEOUT,
            allow_redirects=False,
            stream=True,
        ) as resp:
            content = resp.raw.read(MAX_RESPONSE + 1, decode_content=True)
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
            return resp.status_code, content_type, content

    def _take(self, name: str, size: int, body: bytes) -> int:
        try:
            lines = parse_cosignatures(body)
        except CosignatureError as exc:
            log.warning("witness %s: %s", name, exc)
            return 0
        member = self._ledger.member(name)
        if member is None:
            log.warning("witness %s is not a current member; its cosignatures are ignored", name)
            return 0
        taken = 0
        for line in lines:
            try:
                self._ledger.cosignatures.add(member, size, line)
                taken += 1
            except CosignatureError as exc:  # another key's line, or a bad one: ignored
                log.warning("witness %s: cosignature refused: %s", name, exc)
            except LedgerError as exc:
                log.warning("witness %s: cannot record the cosignature: %s", name, exc)
        return taken
