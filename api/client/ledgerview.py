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

from typing import Protocol

from api.client.registry import Client
from api.errors import InvalidRequestError
from ledger.errors import UntrustedLogError
from ledger.events import Entry
from ledger.trust import Pins, Trusted, TrustedLog
from ledger.view import View

PAGE = 1000


def catch_up(trusted_log: TrustedLog, client: Client, *, wait: int = 0) -> View:
    """Bring ``trusted_log`` up to the registry's checkpoint and return the view it publishes.

    The one fetch loop of every reader that replays the log (the site's follower, the Analyst):

    1. long-poll for entries after the verified size (``wait`` seconds at most);
    2. fetch the checkpoint and verify it (the genesis, staged first on a new log, names the
       log key); entries beyond it prove nothing yet and wait for the next round;
    3. fetch and stage entries up to its size; a registry that answers 416 or an empty page
       below it has withheld them, which the commit names;
    4. fetch the consistency proof from the last trusted checkpoint and commit.

    Raises the :class:`ledger.errors.UntrustedLogError` naming a lie (the log is then spent),
    or the client's errors for a transport failure (what was staged must then be thrown away
    with the log: the caller reopens it).
    """
    start = trusted_log.size
    waited = _entries(client, start, PAGE, wait=wait)
    if trusted_log.staged_size == 0 and waited:
        trusted_log.stage(waited[:1])  # the genesis names the log key the checkpoint is signed by
        waited = waited[1:]
    note = client.checkpoint()
    checkpoint = trusted_log.verify_note(note)
    trusted_log.stage(waited[: max(0, checkpoint.size - trusted_log.staged_size)])
    while trusted_log.staged_size < checkpoint.size:
        page = _entries(
            client, trusted_log.staged_size, min(PAGE, checkpoint.size - trusted_log.staged_size)
        )
        if not page:
            break  # withheld: the commit says so
        trusted_log.stage(page)
    span = trusted_log.consistency_span(checkpoint)
    proof = client.consistency_proof(*span) if span is not None else None
    return trusted_log.commit(note, proof)


def _entries(client: Client, start: int, limit: int, *, wait: int = 0) -> tuple[Entry, ...]:
    """The entries from ``start``; none when the registry answers that it holds fewer (a
    rollback or withheld entries: the checkpoint, verified next, says which)."""
    try:
        return client.entries(start, limit, wait=wait).entries
    except InvalidRequestError as exc:
        if exc.slug != "range-not-satisfiable":
            raise
        return ()


class Replay(Protocol):
    """A verified replay of the ledger that can be brought up to the registry's checkpoint."""

    def sync(self) -> View:
        """Verify what is new; return the view. Raises the lie's UntrustedLogError."""
        ...


class LedgerReader:
    """The ledger served by ``client``, verified under the pinned log key and genesis."""

    def __init__(self, client: Client, *, log_key: str, genesis: str) -> None:
        self._client = client
        self._pins = Pins(log_key=log_key, genesis=genesis)
        self._log = TrustedLog(Trusted(), pins=self._pins)

    def sync(self) -> View:
        """Verify everything up to the registry's current checkpoint; return the new view."""
        try:
            return catch_up(self._log, self._client)
        except UntrustedLogError:
            raise
        except BaseException:
            self._log = TrustedLog(Trusted(), pins=self._pins)  # staged work is not verified
            raise
