"""The CLI's verified replay of a registry's ledger, kept between commands.

``pht task post`` (its review note) and ``pht image`` read the review state from a replay of the
whole ledger through the trust core, never the registry's word. Kept in the state directory
(``$XDG_STATE_HOME/pht/replay/<registry and genesis>``, the site's own format:
:mod:`siteclient.follow.state`),
each command verifies only what is new since the last one. A second command running at the same
time replays in memory instead of waiting for the first.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from api.client.ledgerview import LedgerReader, Replay, catch_up
from api.client.registry import Client
from ledger.errors import (
    CorruptStoreError,
    TrustAnchorError,
    UntrustedLogError,
)
from ledger.trust import Pins, TrustedLog
from ledger.view import View
from siteclient.errors import StateError
from siteclient.follow.state import TrustStore

log = logging.getLogger(__name__)


class SavedReplay:
    """A replay saved in ``directory``; locked only while a sync runs, so that two commands
    never write it at once (the second replays in memory meanwhile)."""

    def __init__(self, client: Client, directory: Path, pins: Pins) -> None:
        self._client = client
        self._directory = directory
        self._pins = pins
        self._memory: LedgerReader | None = None
        self._view: View | None = None

    @property
    def view(self) -> View | None:
        return self._view

    def sync(self) -> View:
        self._view = self._sync()
        return self._view

    def _sync(self) -> View:
        if self._memory is not None:
            return self._memory.sync()
        try:
            store = TrustStore(self._directory, exclusive=True)
        except StateError as exc:
            return self._in_memory(exc).sync()
        try:
            try:
                trusted_log = TrustedLog(store.load(), pins=self._pins)
            except (StateError, CorruptStoreError, TrustAnchorError, UntrustedLogError) as exc:
                return self._in_memory(exc).sync()
            view = catch_up(trusted_log, self._client)
            if view.fresh:
                store.save(trusted_log.trusted)
            return view
        finally:
            store.close()

    def _in_memory(self, why: Exception) -> LedgerReader:
        log.info("replaying the ledger in memory: the saved replay is unusable now (%s)", why)
        assert self._pins.log_key is not None and self._pins.genesis is not None
        self._memory = LedgerReader(
            self._client, log_key=self._pins.log_key, genesis=self._pins.genesis
        )
        return self._memory


def replay_for(client: Client, state_home: Path, *, log_key: str, genesis: str) -> Replay:
    """The replay of ``client``'s ledger saved under ``state_home`` (in memory when the saved
    one is busy or unusable)."""
    # Keyed by the registry and its genesis: a cache of verified work, one per ledger (pinning
    # the genesis is the profile's job, and the Analyst checks it before this is made).
    name = hashlib.sha256(f"{client.base_url} {genesis}".encode()).hexdigest()[:16]
    return SavedReplay(client, state_home / "replay" / name, Pins(log_key=log_key, genesis=genesis))
