"""A researcher's own verified replay of the ledger, for what only the whole ledger can say.

Which images passed review, and how each stands, is a fact of the replayed ledger
(:mod:`ledger.review_state`). The Analyst and ``pht image`` / ``pht task post`` read it from a
:class:`LedgerReader`: the registry's entries are folded by the same rules and verified against
its signed checkpoint by the same trust core (:class:`ledger.trust.TrustedLog`) as a site's
follower does, never taken from a read model the registry could shade. The reader keeps its
replay in memory and extends it on each :meth:`LedgerReader.sync`, so an iterative analysis pays
for the whole ledger once; a one-shot command pays for it every time (the cost of replaying the
ledger, as ``pht audit`` does, without writing anything).

A registry caught lying raises the :class:`ledger.errors.UntrustedLogError` that names the lie,
as in every other reader; the reader is then spent.
"""

from __future__ import annotations

from api.client.registry import Client
from api.errors import InvalidRequestError
from ledger.events import Entry
from ledger.trust import Pins, Trusted, TrustedLog
from ledger.view import View

PAGE = 1000


class LedgerReader:
    """The ledger served by ``client``, verified under the pinned log key and genesis."""

    def __init__(self, client: Client, *, log_key: str, genesis: str) -> None:
        self._client = client
        self._log = TrustedLog(Trusted(), pins=Pins(log_key=log_key, genesis=genesis))

    def sync(self) -> View:
        """Verify everything up to the registry's current checkpoint; return the new view."""
        trusted_log = self._log
        note = self._client.checkpoint()
        if trusted_log.staged_size == 0:
            trusted_log.stage(self._entries(0, 1))  # the genesis names the log key to verify with
        checkpoint = trusted_log.verify_note(note)
        while trusted_log.staged_size < checkpoint.size:
            start = trusted_log.staged_size
            page = self._entries(start, min(PAGE, checkpoint.size - start))
            if not page:
                break  # withheld: commit says so
            trusted_log.stage(page)
        span = trusted_log.consistency_span(checkpoint)
        proof = self._client.consistency_proof(*span) if span is not None else None
        return trusted_log.commit(note, proof)

    def _entries(self, start: int, limit: int) -> tuple[Entry, ...]:
        try:
            return self._client.entries(start, limit).entries
        except InvalidRequestError as exc:
            if exc.slug != "range-not-satisfiable":
                raise
            return ()
