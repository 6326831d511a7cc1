"""The FileService's view of the ledger: who may send files, which tasks exist; kept current.

Request threads read only immutable views. After each verified sync (the trust core publishes a
:class:`ledger.view.View` only once the checkpoint covering it verified), the refresher thread
derives a :class:`LedgerView` from it and publishes that on a :class:`ViewBoard`, and requests
read the latest one.

Fail closed: until a first sync succeeds there is no view; when the feed cannot be trusted (a
fork, an entry that fails verification) the board is halted with the reason and stays halted, so
no upload is accepted on the word of a registry caught lying. Transport failures are retried with
backoff while the last verified view keeps serving.

A revocation reaches the view as soon as the long-poll returns with its entry (normally well under
a second); until then the revoked key is still a member's key here, as it is at every other
follower.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from api.errors import ApiError
from crypto import KeyId, PublicKey
from ledger.bodies import EventId, EventKind, Role
from ledger.view import View
from siteclient.errors import FeedError, StateError
from siteclient.follow.follower import Follower

log = logging.getLogger("siteclient.fileservice")


@dataclass(frozen=True, slots=True)
class Sender:
    """A current member, as the FileService authenticates it."""

    name: str
    role: Role
    public_key: PublicKey


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerView:
    """What the FileService needs of the verified ledger, frozen at one size."""

    origin: str
    size: int
    senders: Mapping[KeyId, Sender]  # current (not revoked) members, by key id
    tasks: frozenset[EventId]
    receiver_active: bool  # this site is a current site member (else its transfers are refused)

    @classmethod
    def of(cls, view: View, site: str) -> LedgerView:
        return cls(
            origin=view.origin,
            size=view.size,
            senders=_senders(view),
            tasks=frozenset(view.tasks),
            receiver_active=_active_site(view, site),
        )

    def advanced(self, view: View, site: str) -> LedgerView:
        """This view moved on to ``view``: tasks only ever join, so only new task ids are added;
        members are rebuilt only when a member event came."""
        kinds = [(entry.event.event.kind, entry.event.event.id) for entry in view.fresh]
        new_tasks = {event_id for kind, event_id in kinds if kind is EventKind.TASK}
        membership = any(kind in (EventKind.MEMBER, EventKind.CONSORTIUM) for kind, _ in kinds)
        return LedgerView(
            origin=view.origin,
            size=view.size,
            senders=_senders(view) if membership else self.senders,
            tasks=self.tasks | new_tasks if new_tasks else self.tasks,
            receiver_active=_active_site(view, site) if membership else self.receiver_active,
        )


def _senders(view: View) -> dict[KeyId, Sender]:
    return {
        member.public_key.key_id: Sender(member.name, member.role, member.public_key)
        for member in view.members.values()
        if member.active
    }


def _active_site(view: View, site: str) -> bool:
    member = view.members.get(site)
    return member is not None and member.active and member.role is Role.SITE


class ViewBoard:
    """The latest published view; thread-safe. ``current()`` is None before the first view and
    after ``halt``."""

    def __init__(self, view: LedgerView | None = None) -> None:
        self._view = view
        self._halted: str | None = None
        self._changed = threading.Condition()

    @property
    def halted(self) -> str | None:
        return self._halted

    def current(self) -> LedgerView | None:
        return None if self._halted is not None else self._view

    def publish(self, view: LedgerView) -> None:
        with self._changed:
            self._view = view
            self._changed.notify_all()

    def halt(self, reason: str) -> None:
        with self._changed:
            self._halted = reason
            self._changed.notify_all()

    def wait_for_task(self, task: str, timeout: float) -> LedgerView | None:
        """The current view once it holds ``task``, or after ``timeout`` seconds whatever it is
        then (a task a sender just saw may be a moment ahead of this follower)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                view = self.current()
                remaining = deadline - time.monotonic()
                if view is None or task in view.tasks or remaining <= 0:
                    return view
                self._changed.wait(remaining)


class ViewRefresher:
    """Runs ``follower.sync(wait)`` in a loop and publishes each verified view on ``board``."""

    def __init__(
        self,
        follower: Follower,
        board: ViewBoard,
        *,
        site: str,
        wait: int,
        max_backoff: float = 30.0,
        on_halt: Callable[[str], None] | None = None,
    ) -> None:
        self._follower = follower
        self._board = board
        self._site = site
        self._wait = wait
        self._max_backoff = max_backoff
        self._on_halt = on_halt
        self._view: LedgerView | None = None

    def sync_once(self, wait: int = 0) -> LedgerView:
        """One sync, then publish. Raises FeedError, StateError or ApiError."""
        view = self._follower.sync(wait)
        if self._view is None or self._view.size + len(view.fresh) != view.size:
            # First, or a view was missed (a sync that committed but then failed to save):
            # its entries are not in ``fresh``, so rebuild rather than add a delta.
            self._view = LedgerView.of(view, self._site)
        elif view.fresh:
            self._view = self._view.advanced(view, self._site)
        self._board.publish(self._view)
        return self._view

    def run(self, stop: threading.Event) -> None:
        """Sync until ``stop`` is set or the feed cannot be trusted (then halt the board)."""
        backoff = 0.5
        while not stop.is_set():
            try:
                self.sync_once(self._wait)
            except FeedError as exc:  # a fork or an entry that fails verification
                self._halt(f"the registry's feed cannot be trusted: {exc}")
                return
            except (ApiError, StateError) as exc:
                log.warning("ledger sync failed (retrying in %.1f s): %s", backoff, exc)
                stop.wait(backoff)
                backoff = min(self._max_backoff, backoff * 2)
                continue
            except Exception as exc:  # a stale view would let revoked members in: fail closed
                log.exception("ledger sync crashed")
                self._halt(f"the ledger sync stopped: {type(exc).__name__}")
                return
            backoff = 0.5

    def _halt(self, reason: str) -> None:
        log.error("%s; refusing uploads until an operator looks", reason)
        self._board.halt(reason)
        if self._on_halt is not None:
            self._on_halt(reason)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="fileservice-sync")
        thread.daemon = True
        thread.start()
        return thread
