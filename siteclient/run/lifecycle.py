"""``siteclient follow``'s loop: when to retry, when to stop, and how to stop quickly.

:class:`Lifecycle` steps the :class:`~siteclient.run.agent.Agent` until asked to stop.

- **Who we are.** Every verified view is checked (:mod:`siteclient.follow.membership`) before
  the agent acts on it, and the saved view at start too: a site name that is no site of the
  consortium, or a key that is not that site's, stops the client with the reason; a revoked
  site stops with :class:`RevokedError` (exit code 5), naming the entry.
- **A refused key.** A 401 ``unknown-key`` is never retried: the registry no longer knows the
  key. The verified view, else the membership staged in the refused round
  (:attr:`Follower.refused_state`), says whether and where the site was revoked; the entry is
  remembered in the state directory, so a restart that meets the same refusal names it again.
  (A site that was down when it was revoked never sees the entry: the registry refuses its
  reads. It stops with exit code 1, saying that it was probably revoked.)
- **First start.** Before anything was ever verified (an empty state directory), a registry
  that cannot be reached, or that answers but is not a PHT registry, stops the client with
  the fix (:class:`RegistryError`), since that is a wrong ``registry`` in the config far more
  often than an outage. Once anything was verified, transient failures are retried with backoff
  as before, and the first success after failures logs ``reconnected``.
- **Stopping.** :meth:`Lifecycle.serve` runs the loop in a daemon thread and waits on the stop
  event in the calling (main) thread, where signal handlers run. On stop it waits for the
  follower's :attr:`~siteclient.follow.follower.Follower.hold` (never leaving mid-save), lets the
  loop thread end if it can within :data:`STOP_GRACE_S`, and returns; a long poll still pending
  is abandoned with the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from api.errors import ApiError, ProblemError, ProtocolError, TransportError, UnauthenticatedError
from crypto import KeyId
from siteclient.errors import MembershipError, RegistryError, RevokedError, SiteClientError
from siteclient.follow.follower import Follower
from siteclient.follow.membership import check_membership, guard_for
from siteclient.follow.state import TrustStore
from siteclient.run.agent import Agent, fatal
from siteclient.setup.probe import probe_registry

log = logging.getLogger(__name__)

STOP_GRACE_S = 0.25  # how long a stop waits for the loop thread to end on its own
HOLD_WAIT_S = 0.8  # how long a stop waits for a save in progress


class Lifecycle:
    def __init__(
        self,
        *,
        agent: Agent,
        follower: Follower,
        site: str,
        key_id: KeyId,
        registry: str,
        wait: int,
        backoff: float = 1.0,
        store: TrustStore,
        probe: Callable[[str], object] = probe_registry,
    ) -> None:
        self._agent = agent
        self._follower = follower
        self._site = site
        self._key_id = key_id
        self._registry = registry
        self._wait = wait
        self._backoff = backoff
        self._probe = probe
        self._store = store
        self.check = guard_for(site, key_id)
        self.error: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set; raise what must stop the site."""
        saved = self._follower.view
        if saved is not None:
            self.check(saved)  # a site revoked before this start stops at once
        reached = saved is not None
        delay, failures = self._backoff, 0
        while not stop.is_set():
            try:
                self._agent.step(self._wait)
            except UnauthenticatedError as exc:
                if exc.slug != "unknown-key":
                    raise
                self._refused(exc, reached)
            except (ApiError, SiteClientError) as exc:
                if fatal(exc):
                    raise
                if not reached and isinstance(exc, ApiError):
                    self._first_failure(exc)
                if isinstance(exc, ApiError):
                    failures += 1
                log.warning("%s; retrying in %.0f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            if failures:
                log.info("reconnected to %s after %d failed attempt(s)", self._registry, failures)
            reached, delay, failures = True, self._backoff, 0

    def once(self) -> None:
        """``follow --once``: catch up, run what is pending, catch up again; the same checks
        and first-start diagnostics as :meth:`run`, but nothing is retried."""
        saved = self._follower.view
        if saved is not None:
            self.check(saved)
        try:
            self._agent.step(0)
            self._agent.drain()
            self._agent.step(0)  # sees our own results; queues again what failed transiently
            self._agent.drain()
        except UnauthenticatedError as exc:
            if exc.slug != "unknown-key":
                raise
            self._refused(exc, saved is not None)
        except ApiError as exc:
            if saved is None and self._follower.view is None:
                self._first_failure(exc)
            raise

    def serve(self, stop: threading.Event, *, on_tick: Callable[[], None] | None = None) -> None:
        """:meth:`run` in a daemon thread until it ends or ``stop`` is set (see the module);
        ``on_tick`` runs in this thread about every 0.2 s (the SIGHUP reload). Re-raises what
        ended the loop."""

        def loop() -> None:
            try:
                self.run(stop)
            except BaseException as exc:
                self.error = exc
            finally:
                stop.set()

        thread = threading.Thread(target=loop, name="follow", daemon=True)
        thread.start()
        while not stop.wait(0.2):
            if on_tick is not None:
                on_tick()
        if self._follower.hold.acquire(timeout=HOLD_WAIT_S):
            # Held from here on: the loop thread, if its long poll returns before the process
            # ends, waits here and never starts acting on a view or saving one.
            thread.join(STOP_GRACE_S)
        else:
            log.warning("a save of the verified state is taking long; stopping anyway")
        if self.error is not None:
            raise self.error

    def _refused(self, exc: UnauthenticatedError, reached: bool) -> None:
        """A 401 ``unknown-key``: say whether the site was revoked, and where; always raise."""
        view = self._follower.view
        if view is not None:
            self.check(view)
        staged = self._follower.refused_state
        if staged is not None:
            try:
                check_membership(
                    staged.members,
                    staged.keys,
                    site=self._site,
                    key_id=self._key_id,
                    as_of=staged.size,
                    verified=False,
                )
            except RevokedError as revoked:
                self._store.mark_revoked(revoked.index)
                raise
        seen = self._store.revoked_at()
        if seen is not None:
            raise RevokedError(
                f"site {self._site!r} was revoked at entry {seen} (as the registry served it "
                f"before; it refuses this site's key now: {exc})",
                index=seen,
                verified=False,
            ) from exc
        short = self._key_id[:12]
        if not reached:
            raise MembershipError(
                f"the registry at {self._registry} does not know this site's key {short}… ({exc}): "
                f"is {self._site!r} a member with this key? Send the admin the members-file line "
                "`siteclient init` printed (`pht member add`), or point key_file at the right key"
            ) from exc
        assert view is not None
        raise MembershipError(
            f"the registry refuses this site's key {short}… ({exc}), though the ledger verified "
            f"here up to entry {view.size} lists {self._site!r} as a current site: it was "
            "probably revoked since (ask the admin); stopping"
        ) from exc

    def _first_failure(self, exc: ApiError) -> None:
        """Before anything was verified: raise RegistryError when the URL is wrong; return when
        a PHT registry answers there (a transient failure: retried)."""
        if isinstance(exc, TransportError):
            raise RegistryError(
                f"cannot reach the registry at {self._registry} ({exc}): is `pht serve` running "
                "there? check `registry` in the site config (the site retries only once it has "
                "verified the ledger once)"
            ) from exc
        if isinstance(exc, ProblemError | ProtocolError):
            self._probe(self._registry)  # raises RegistryError for "not a PHT registry"
