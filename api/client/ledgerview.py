"""A researcher's own verified replay of the ledger, for what only the whole ledger can say.

Which images passed review, and how each stands, is a fact of the replayed ledger
(:mod:`ledger.review_state`). The Analyst and ``pht image`` / ``pht task post`` read it from a
:class:`LedgerReader`: the registry's entries are folded by the same rules and verified against
its signed checkpoint by the same trust core (:class:`ledger.trust.TrustedLog`) as a site's
follower does, never taken from a read model the registry could shade. The reader keeps its
replay in memory and extends it on each :meth:`LedgerReader.sync`, so an iterative analysis pays
for the whole ledger once; a one-shot command pays for it every time (the cost of replaying the
ledger, as ``pht audit`` does, without writing anything).

With a witness policy in the ledger (DESIGN 12) the reader verifies the registry's *cosigned*
checkpoint and the trust core demands its quorum: short of it, :class:`ledger.errors.QuorumError`
says how many witnesses cosigned, and nothing of that checkpoint is read.

A registry caught lying raises the :class:`ledger.errors.UntrustedLogError` that names the lie,
as in every other reader; the reader is then spent.
"""

from __future__ import annotations

from api.client.registry import Client
from api.errors import InvalidRequestError
from ledger.errors import QuorumError
from ledger.events import Entry
from ledger.trust import Pins, Trusted, TrustedLog
from ledger.view import View

PAGE = 1000


class LedgerReader:
    """The ledger served by ``client``, verified under the pinned log key and genesis."""

    def __init__(self, client: Client, *, log_key: str, genesis: str) -> None:
        self._client = client
        self._pins = Pins(log_key=log_key, genesis=genesis)
        self._log = TrustedLog(Trusted(), pins=self._pins)
        self._cosigned = False  # a witness policy is in force: read the cosigned checkpoint

    @property
    def view(self) -> View | None:
        return self._log.view

    def sync(self) -> View:
        """Verify everything up to the registry's current (with a witness policy: cosigned)
        checkpoint; return the new view."""
        try:
            return self._sync()
        except QuorumError:
            # Nothing staged is kept: the reader starts again (from the cosigned checkpoint, when
            # the policy came into force in what was staged).
            self._log = TrustedLog(Trusted(), pins=self._pins)
            if self._cosigned:
                raise
            self._cosigned = True
            return self._sync()

    def _sync(self) -> View:
        trusted_log = self._log
        if trusted_log.view is not None and trusted_log.view.witness_policy is not None:
            self._cosigned = True
        cosigned = self._cosigned
        note = self._client.cosigned_checkpoint() if cosigned else self._client.checkpoint()
        if trusted_log.staged_size == 0:
            trusted_log.stage(self._entries(0, 1))  # the genesis names the log key to verify with
        checkpoint = trusted_log.verify_note(note)
        if cosigned and checkpoint.size < trusted_log.size:
            raise QuorumError(
                f"no checkpoint newer than size {trusted_log.size} has been cosigned",
                size=checkpoint.size,
            )
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
