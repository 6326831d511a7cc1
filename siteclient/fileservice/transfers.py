"""Recording a received file as a signed ``transfer`` event, exactly once per (task, sha256).

The bytes are already in the inbox when :meth:`TransferRecorder.record` runs. Under a lock for
(task, sha256) it writes a *pending* receipt holding the signed event, posts the event, and then
writes the receipt again with the entry's index. The same signed event is posted when a pending
receipt is finished later (a retried upload, or the service's next start), and the registry
appends an event once, so a crash or a lost answer never records a transfer twice.

Errors of the registry client propagate (:mod:`api.errors`): ``TransportError`` and
``ServerError`` leave the receipt pending; any other ``ProblemError`` (the registry refuses the
event) first removes the bytes and the receipt, so nothing is kept that the ledger does not show.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from api.client.answers import Appended
from api.errors import ApiError, ProblemError, ServerError, TransportError
from crypto import SigningKey
from ledger.bodies import EventId, Transfer
from ledger.events import SignedEvent, format_time, new_event
from siteclient.errors import RaceError, StateError
from siteclient.fileservice.inbox import Inbox, InboxEntry

log = logging.getLogger("siteclient.fileservice")


class EventPoster(Protocol):
    """Appends signed events at the registry (:class:`api.client.registry.Client`)."""

    def post_event(self, signed: SignedEvent) -> Appended: ...


class TransferRecorder:
    """Writes receipts into ``inbox`` and appends their transfer events, signed by ``site``."""

    def __init__(
        self,
        *,
        site: str,
        key: SigningKey,
        inbox: Inbox,
        client: EventPoster,
        clock: Callable[[], float],
    ) -> None:
        self._site = site
        self._key = key
        self._inbox = inbox
        self._client = client
        self._clock = clock
        self._locks = tuple(threading.Lock() for _ in range(64))

    def record(
        self,
        *,
        origin: str,
        sender: str,
        task: str,
        sha256: str,
        size: int,
        name: str | None,
    ) -> tuple[InboxEntry, bool]:
        """The receipt of the stored file (task, sha256), and whether this call created it.

        ``origin`` is the ledger's origin the event is bound to. Raises :class:`StateError`
        (the receipt cannot be written: nothing is kept), :class:`RaceError`, or the registry
        client's :class:`ApiError` (see the module docstring).
        """
        lock = self._locks[(int(task[:8], 16) ^ int(sha256[:8], 16)) % len(self._locks)]
        with lock:
            entry = self._inbox.find(task, sha256)
            if entry is not None:
                return (entry if entry.recorded else self.finish(entry)), False
            if not self._inbox.path(task, sha256).is_file():  # a concurrent failure removed it
                raise RaceError(f"the bytes of {sha256[:16]} vanished; send the file again")
            now = format_time(datetime.fromtimestamp(self._clock(), UTC))
            body = Transfer(
                sender=sender, recipient=self._site, task=EventId(task), sha256=sha256, size=size
            )
            event = new_event(body, ledger=origin, author=self._key.key_id, clock=lambda: now)
            entry = InboxEntry(
                task=task,
                sha256=sha256,
                size=size,
                sender=sender,
                name=name,
                received=now,
                transfer=SignedEvent.sign(event, self._key),
            )
            try:
                self._inbox.save(entry)
            except StateError:
                self._inbox.discard(task, sha256)
                raise
            return self.finish(entry), True

    def finish(self, entry: InboxEntry) -> InboxEntry:
        """Post ``entry``'s transfer event and record its index (idempotent at the registry)."""
        try:
            try:
                appended = self._client.post_event(entry.transfer)
            except ProblemError as exc:
                if exc.slug != "event-time-out-of-window":
                    raise
                # Pending longer than the registry's window (it was down): the same receipt,
                # signed again now; saved first, so a crash does not lose it.
                entry = self._resigned(entry)
                appended = self._client.post_event(entry.transfer)
        except (TransportError, ServerError) as exc:
            log.warning("the transfer of %s stays pending: %s", entry.sha256[:16], exc)
            raise
        except ProblemError as exc:
            log.error("the registry refused the transfer of %s: %s", entry.sha256[:16], exc)
            self._inbox.discard(entry.task, entry.sha256)
            raise
        recorded = replace(entry, transfer_index=appended.index)
        self._inbox.save(recorded)
        log.info(
            "received %s for task %s from %s (%d bytes): transfer at entry %d",
            entry.sha256[:16],
            entry.task[:16],
            entry.sender,
            entry.size,
            appended.index,
        )
        return recorded

    def _resigned(self, entry: InboxEntry) -> InboxEntry:
        now = format_time(datetime.fromtimestamp(self._clock(), UTC))
        event = new_event(
            entry.transfer.event.body,
            ledger=entry.transfer.event.ledger,
            author=self._key.key_id,
            clock=lambda: now,
        )
        resigned = replace(entry, transfer=SignedEvent.sign(event, self._key))
        self._inbox.save(resigned)
        return resigned

    def finish_pending(self) -> int:
        """Finish the receipts a crash or an unreachable registry left pending; return how many
        remain pending."""
        left = 0
        for entry in self._inbox.pending():
            try:
                self.finish(entry)
            except (ApiError, StateError):
                left += 1
        return left
