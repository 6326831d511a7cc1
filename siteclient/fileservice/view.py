"""The FileService's view of the ledger: who may send files, which tasks exist; kept current.

The follower (:mod:`siteclient.follow.follower`) changes its replayed state in place while it
syncs, and
folds entries in before the checkpoint that covers them is verified. So request threads never
read it. After each successful sync, the refresher thread (the follower's only user) publishes an
immutable :class:`LedgerView` on a :class:`ViewBoard`, and requests read the latest one.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from api.errors import ApiError
from crypto import KeyId, PublicKey
from ledger.bodies import EventId, EventKind, Role
from ledger.events import Entry
from ledger.state import State
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
    def of(cls, state: State, site: str) -> LedgerView:
        return cls(
            origin=state.origin,
            size=state.size,
            senders=_senders(state),
            tasks=frozenset(state.tasks),
            receiver_active=_active_site(state, site),
        )

    def advanced(self, state: State, fresh: Iterable[Entry], site: str) -> LedgerView:
        """This view moved on to ``state`` after the entries ``fresh``: tasks only ever join, so
        only new task ids are added; members are rebuilt only when a member event came."""
        kinds = [(entry.event.event.kind, entry.event.event.id) for entry in fresh]
        new_tasks = {event_id for kind, event_id in kinds if kind is EventKind.TASK}
        membership = any(kind in (EventKind.MEMBER, EventKind.CONSORTIUM) for kind, _ in kinds)
        return LedgerView(
            origin=state.origin,
            size=state.size,
            senders=_senders(state) if membership else self.senders,
            tasks=self.tasks | new_tasks if new_tasks else self.tasks,
            receiver_active=_active_site(state, site) if membership else self.receiver_active,
        )


def _senders(state: State) -> dict[KeyId, Sender]:
    return {
        member.public_key.key_id: Sender(member.name, member.role, member.public_key)
        for member in state.members.values()
        if member.active
    }


def _active_site(state: State, site: str) -> bool:
    member = state.members.get(site)
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
        fresh = self._follower.sync(wait)
        state = self._follower.trusted.state
        if self._view is None:
            self._view = LedgerView.of(state, self._site)
        elif fresh:
            self._view = self._view.advanced(state, fresh, self._site)
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
