"""Publishing the integrator's checkpoints into ``pht_log``, off the append path: a thread of
its own writes the newest checkpoint offered (many offered while one is written coalesce into
the next write), and the database wakes the other processes on the ledger (its NOTIFY)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ledger.errors import StoreError
from ledger.store.postgres.schema import Session, save_checkpoint

log = logging.getLogger(__name__)
RETRY = 0.25  # seconds before writing again after the database failed


class Publisher:
    def __init__(self, dsn: str, written: Callable[[bytes], None]) -> None:
        self._dsn = dsn
        self._written = written
        self._session: Session | None = None
        self._pending: bytes | None = None
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pht-publish", daemon=True)
        self._thread.start()

    def offer(self, note: bytes) -> None:
        with self._changed:
            self._pending = note
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending is not None or self._closed)
                note, self._pending = self._pending, None
            if note is None:
                return  # closed, nothing left
            if self._write(note):
                try:
                    self._written(note)
                except Exception:  # the next checkpoint is served instead; say why not this one
                    log.exception("serving the published checkpoint failed")
            else:
                with self._changed:
                    if self._pending is None:
                        self._pending = note  # nothing newer came: write this one again
                    if self._closed:
                        return
                    self._changed.wait(RETRY)

    def _write(self, note: bytes) -> bool:
        try:
            if self._session is None:
                self._session = Session(self._dsn)
            save_checkpoint(self._session, note)
            return True
        except StoreError as exc:
            log.warning("publishing the checkpoint failed (will retry): %s", exc)
            if self._session is not None:
                self._session.close()
            self._session = None
            return False

    def close(self) -> None:
        """Write what is pending (once), then stop."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join(timeout=5)
        if self._session is not None:
            self._session.close()
