"""The follower: the I/O shell that feeds the registry's bytes to the trust core.

Each ``sync`` runs the one fetch loop every replaying reader shares
(:func:`api.client.ledgerview.catch_up`: long-poll, verify the checkpoint, stage up to it, prove
consistency, commit; every decision is :class:`ledger.trust.TrustedLog`'s), then hands the new
immutable view to ``act`` and persists the cursor, checkpoint and state together.

Witnesses (DESIGN 12). A site with a :class:`~siteclient.follow.witness.Witness` first cosigns
the registry's newest checkpoint (before the checkpoint is fetched). Once the ledger holds a
witness policy, the follower reads the *cosigned* checkpoint (``/v1/checkpoint/cosigned``), and
``commit`` accepts
it only with the policy's quorum of cosignatures. Short of it (:class:`ledger.errors.QuorumError`)
nothing staged is kept or acted on: the site logs ``waiting for witnesses: 1 of 2``, polls again
every :data:`WITNESS_POLL` s until the round's wait is over, and then returns the view it had.
A checkpoint still short of its quorum after ``patience`` seconds is reported as a warning.

Every way a registry can lie (:class:`ledger.errors.UntrustedLogError`) ends the same way: both
checkpoints (and an entry served in two versions) are kept as evidence in the state directory and
:class:`ForkDetectedError` is raised, which stops the site with exit code 3. Nothing staged before
the lie is ever acted on or saved.

Stopping. ``hold`` is a lock the follower holds while it acts on a new view and saves it; a site
client that stops takes it first, so it never leaves in the middle of a save, while a pending
long poll (which holds nothing) does not keep it waiting.

Refused keys. When the registry refuses this site's key (401) in the middle of a round, the
membership the round had staged (entries the registry served, signed and chained to the verified
history, not yet proven under a checkpoint) is kept as :attr:`Follower.refused_state`: it can say
that the site was revoked, and at which entry, when the proof can no longer be fetched.

Trust anchors: the genesis entry hash and the registry's log key, pinned in the site's config or,
when the config leaves them out, trusted on first use and then pinned (logged loudly).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from api.client.ledgerview import catch_up
from api.client.registry import Client
from api.errors import UnauthenticatedError
from ledger.errors import (
    CorruptStoreError,
    HistoryRewrittenError,
    QuorumError,
    TrustAnchorError,
    UntrustedLogError,
)
from ledger.events import Entry
from ledger.state import State
from ledger.trust import Pins, TrustedLog
from ledger.view import View
from ledger.witness_rules import policy_of
from siteclient.errors import FeedError, ForkDetectedError, StateError, WitnessWaitError
from siteclient.follow.state import TrustStore
from siteclient.follow.witness import Witness

log = logging.getLogger(__name__)

WITNESS_POLL = 0.02  # seconds between looks at the cosigned checkpoint while waiting


class Follower:
    def __init__(
        self,
        client: Client,
        store: TrustStore,
        *,
        log_key: str | None,
        genesis: str | None,
        witness: Witness | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        patience: float = 60.0,
    ) -> None:
        self._client = client
        self._store = store
        self._pins = Pins(log_key=log_key, genesis=genesis)
        self._witness = witness
        self._clock, self._sleep, self._patience = clock, sleep, patience
        self._cosigned = False  # a witness policy is in force: read the cosigned checkpoint
        self._waiting: tuple[int, float, bool] | None = None  # size, since, reported
        self.hold = threading.Lock()  # held while acting on a view and saving it
        self.refused_state: State | None = None  # staged when the registry refused our key
        self._log = self._open()

    def _open(self) -> TrustedLog:
        try:
            return TrustedLog(self._store.load(), pins=self._pins)
        except TrustAnchorError as exc:
            raise FeedError(str(exc)) from exc
        except UntrustedLogError as exc:  # our own saved checkpoint no longer verifies
            raise StateError(f"the site's saved checkpoint does not verify: {exc}") from exc
        except CorruptStoreError as exc:
            raise StateError(f"the site's saved state is damaged: {exc}") from exc

    @property
    def size(self) -> int:
        """Entries verified so far."""
        return self._log.size

    @property
    def view(self) -> View | None:
        """The latest verified view (None before the first sync)."""
        return self._log.view

    def sync(self, wait: int = 0, *, act: Callable[[View], None] | None = None) -> View:
        """Verify whatever the registry has beyond the last verified size; return the view.

        ``act``, if given, is called with the new view before it is written to disk, so that
        work it starts overlaps that write. (Acting first is safe: after a crash before the
        write the site verifies those entries again, and the agent does nothing twice that the
        ledger already records.)

        With a witness policy in force it waits up to ``wait`` s for the quorum (see the module);
        short of it, it returns the view it had (nothing fresh), or raises
        :class:`WitnessWaitError` before the first view.
        """
        deadline = self._clock() + wait
        while True:
            try:
                view = self._round(wait, act)
                self._waiting = None
                return view
            except QuorumError as exc:
                self._log = self._open()  # nothing staged is kept
                if not self._cosigned:  # the policy just came into force: read the cosigned one
                    self._cosigned = True
                    continue
                self._report(exc)
                if self._clock() >= deadline:
                    if self._log.view is None:
                        raise WitnessWaitError(f"waiting for witnesses: {exc}") from exc
                    return dataclasses.replace(self._log.view, fresh=())
                self._sleep(WITNESS_POLL)
                wait = 0

    def _report(self, exc: QuorumError) -> None:
        now = self._clock()
        if self._waiting is None or self._waiting[0] != exc.size:
            self._waiting = (exc.size, now, False)
            log.info("waiting for witnesses: %d of %d (%s)", exc.have, exc.need, exc)
        elif not self._waiting[2] and now - self._waiting[1] >= self._patience:
            self._waiting = (exc.size, self._waiting[1], True)
            log.warning(
                "the checkpoint of size %d has not reached its witness quorum in %.0f s; "
                "nothing from it is acted on: %s",
                exc.size,
                now - self._waiting[1],
                exc,
            )

    def _round(self, wait: int, act: Callable[[View], None] | None) -> View:
        trusted_log = self._log
        start = trusted_log.size
        if policy_of(trusted_log.trusted.state) is not None:
            self._cosigned = True
        try:
            view = catch_up(
                trusted_log,
                self._client,
                wait=wait,
                cosigned=self._cosigned,
                before_checkpoint=self._witness_round,
            )
        except UntrustedLogError as exc:
            self._caught(exc, b"")
        except QuorumError:
            raise
        except BaseException as exc:
            # A transient failure (the network, a timeout) before the commit: what was staged
            # goes with this log, and the next sync starts again from the saved state.
            if isinstance(exc, UnauthenticatedError):
                self.refused_state = trusted_log.trusted.state
            self._log = self._open()
            raise
        with self.hold:
            try:
                if act is not None:
                    act(view)
            finally:
                if view.fresh or start == 0:
                    self._store.save(trusted_log.trusted)
        return view

    def _witness_round(self, trusted_log: TrustedLog) -> None:
        trusted = trusted_log.trusted
        if self._witness is None or trusted.log_key is None:
            return
        view = trusted_log.view
        self._witness.observe(
            log_key=trusted.log_key,
            origin=trusted.state.origin,
            trusted=view.checkpoint if view is not None else None,
        )

    def entry(self, index: int) -> Entry:
        """Entry ``index`` (below the verified size) as the registry serves it now, checked
        against the verified leaf; another one is a rewritten history (evidence kept)."""
        view = self._log.view
        entry = self._client.entry(index)
        if view is None or entry.leaf_hash != view.leaf(index):
            lie = HistoryRewrittenError(
                f"entry {index} served now differs from the one verified before",
                trusted=view.note if view is not None else b"",
                index=index,
            )
            self._caught(lie, b"", entry.canonical)
        return entry

    def _caught(self, exc: UntrustedLogError, note: bytes, entry: bytes = b"") -> NoReturn:
        if not exc.served:
            try:
                exc.served = note or self._client.checkpoint()
            except Exception:  # evidence is best effort; the lie is already established
                log.warning("could not fetch the registry's checkpoint for the evidence")
        folder = self._store.keep_evidence(
            exc, name=f"{type(exc).__name__}-at-{self._log.size}", entry=entry
        )
        raise ForkDetectedError(
            f"the registry cannot be trusted ({type(exc).__name__}): {exc}; evidence kept in "
            f"{folder}"
        ) from exc
