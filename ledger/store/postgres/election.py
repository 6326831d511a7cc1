"""Electing the one registry process that integrates a shared ledger: builds the checkpoint over
every sequenced entry, signs it and publishes it for the others (DESIGN 10).

The integrator is whoever holds a session-level advisory lock named after the ledger's schema.
PostgreSQL releases it when that session ends: a process that dies (SIGKILL included) closes its
socket, its backend ends, and the next candidate's attempt wins. Every candidate tries every
``TICK`` seconds, so a dead integrator is replaced within about ``TICK`` plus one catch-up.

The integrator checks its session each tick; when the database dropped it (a restart, a cut), it
stops integrating at once and campaigns again like the others. For the short time two processes
may both believe they integrate, no harm can follow: both sign checkpoints over prefixes of the
same dense sequence of entries, Ed25519 signing is deterministic, and the database keeps only the
largest published checkpoint, so the log never forks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ledger.errors import StoreError
from ledger.store.postgres.schema import Session, database_error

log = logging.getLogger(__name__)
TICK = 0.25  # seconds between attempts (and, for the integrator, between checks of its session)

# Two-key advisory lock: a constant of ours (b"pht\x01"), and the schema holding the ledger.
_TRY = "SELECT pg_try_advisory_lock(1886893057, hashtext(current_schema()))"


class Election:
    """One candidate. ``integrating`` says whether it holds the lock now; ``on_elected`` runs
    (in the election's thread) each time it wins."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._session: Session | None = None
        self._held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_elected: Callable[[], None] | None = None

    @property
    def integrating(self) -> bool:
        return self._held

    def try_once(self) -> bool:
        """Campaign once, now (the first attempt, before the ledger is recovered)."""
        self._held = self._attempt()
        return self._held

    def start(self, on_elected: Callable[[], None]) -> None:
        self._on_elected = on_elected
        self._thread = threading.Thread(target=self._run, name="pht-election", daemon=True)
        self._thread.start()

    def _attempt(self) -> bool:
        try:
            if self._session is None:
                self._session = Session(self._dsn)
            row = self._session.get().execute(_TRY).fetchone()
            return bool(row and row[0])
        except (StoreError, database_error()) as exc:
            log.debug("campaigning to integrate the ledger: %s", exc)
            self._drop()
            return False

    def _still_held(self) -> bool:
        """Whether the session holding the lock is alive (``Session.get`` would reconnect to a
        new session, which holds nothing: a dropped one is never used again)."""
        session = self._session
        try:
            if session is None or session.broken():
                raise StoreError("the session that held the lock is gone")
            session.get().execute("SELECT 1")
        except (StoreError, database_error()):
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            if self._held:
                if not self._still_held():
                    self._held = False
                    log.warning("lost the database session: no longer integrating the ledger")
                continue
            if self._attempt():
                self._held = True
                log.info("elected to integrate the ledger")
                try:
                    assert self._on_elected is not None
                    self._on_elected()
                except Exception:  # the appends and the next checkpoint report their own errors
                    log.exception("taking over the ledger's integration failed")

    def close(self) -> None:
        """Stop campaigning and give up the lock (by ending the session)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TICK * 4)
        self._held = False
        self._drop()
