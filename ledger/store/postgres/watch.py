"""Waking a registry process when another one appended to the shared ledger: LISTEN on the
channel every sequencing transaction NOTIFYs on commit, with a poll each second as the fallback
(a notification missed while the connection was down, a database that does not deliver them)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from ledger.errors import StoreError
from ledger.store.postgres.schema import LISTEN, Session, database_error

log = logging.getLogger(__name__)
POLL = 1.0


class Watcher:
    def __init__(self, dsn: str, wake: Callable[[], None]) -> None:
        self._dsn = dsn
        self._wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pht-store-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        session: Session | None = None
        while not self._stop.is_set():
            try:
                if session is None:
                    session = Session(self._dsn)
                    session.get().execute(LISTEN)
                for _ in session.get().notifies(timeout=POLL, stop_after=1):
                    pass
            except (StoreError, database_error()) as exc:
                log.debug("watching the ledger's database: %s", exc)
                if session is not None:
                    session.close()
                session = None
                self._stop.wait(POLL)
            if self._stop.is_set():
                break
            try:
                self._wake()
            except Exception:  # the next wake retries; the appends report their own errors
                log.exception("catching up with the shared ledger failed")
        if session is not None:
            session.close()

    def stop(self, nudge: Callable[[], None]) -> None:
        """Stop; ``nudge`` sends a notification, so the thread need not wait out its poll."""
        self._stop.set()
        with contextlib.suppress(StoreError):
            nudge()
        self._thread.join(timeout=POLL * 3)
