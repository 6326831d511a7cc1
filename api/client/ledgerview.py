"""A researcher's own verified replay of the ledger, for what only the whole ledger can say.

Which images passed review, and how each stands, is a fact of the replayed ledger
(:mod:`ledger.review_state`). The Analyst and ``pht image`` / ``pht task post`` read it from a
:class:`LedgerReader`: the registry's entries are folded by the same rules and verified against
its signed checkpoint by the same trust core (:class:`ledger.trust.TrustedLog`) as a site's
follower does, never taken from a read model the registry could shade. The reader keeps its
replay in memory and extends it on each :meth:`LedgerReader.sync`, so an iterative analysis pays
for the whole ledger once; the CLI keeps its replay on disk between commands
(:mod:`cli.replay`), so each command pays only for what is new.

With a witness policy in the ledger (DESIGN 12) the reader verifies the registry's *cosigned*
checkpoint and the trust core demands its quorum: short of it, :class:`ledger.errors.QuorumError`
says how many witnesses cosigned, and nothing of that checkpoint is read.

A registry caught lying raises the :class:`ledger.errors.UntrustedLogError` that names the lie,
as in every other reader; the reader is then spent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from api.client.registry import Client
from api.client.tiles import TileReader
from api.errors import InvalidRequestError, ProtocolError
from ledger.checkpoint import Checkpoint
from ledger.errors import HistoryRewrittenError, LedgerError, QuorumError, UntrustedLogError
from ledger.events import Entry
from ledger.tiles import WIDTH
from ledger.trust import Pins, Trusted, TrustedLog
from ledger.view import View

PAGE = 1000
TILES_FROM = 4 * WIDTH  # a backlog from which the entries are read as tiles, when offered


def catch_up(
    trusted_log: TrustedLog,
    client: Client,
    *,
    wait: int = 0,
    cosigned: bool = False,
    before_checkpoint: Callable[[TrustedLog], None] | None = None,
) -> View:
    """Bring ``trusted_log`` up to the registry's checkpoint and return the view it publishes.

    The one fetch loop of every reader that replays the log (the site's follower, the Analyst):

    1. long-poll for entries after the verified size (``wait`` seconds at most);
    2. fetch the checkpoint (``cosigned``: the newest one with its witnesses' cosignatures, when
       a witness policy is in force) and verify it (the genesis, staged first on a new log,
       names the log key); entries beyond it prove nothing yet and wait for the next round;
    3. fetch and stage entries up to its size; a registry that answers 416 or an empty page
       below it has withheld them, which the commit names. A backlog of :data:`TILES_FROM` or
       more is read as C2SP tiles when the registry offers them (each entry bundle held to the
       checkpoint before it is staged, :class:`api.client.tiles.TileReader`); the long-poll
       stays on the entry pages, since tiles only cover what exists;
    4. fetch the consistency proof from the last trusted checkpoint and commit.

    ``before_checkpoint`` runs just before step 2 (a site's witness cosigns there).

    Raises the :class:`ledger.errors.UntrustedLogError` naming a lie (the log is then spent),
    :class:`ledger.errors.QuorumError` when the checkpoint lacks its witnesses' quorum, or the
    client's errors for a transport failure (in the last two cases what was staged must be
    thrown away with the log: the caller reopens it).
    """
    start = trusted_log.size
    waited = _entries(client, start, PAGE, wait=wait)
    if trusted_log.staged_size == 0 and waited:
        trusted_log.stage(waited[:1])  # the genesis names the log key the checkpoint is signed by
        waited = waited[1:]
    if before_checkpoint is not None:
        before_checkpoint(trusted_log)
    note = client.cosigned_checkpoint() if cosigned else client.checkpoint()
    checkpoint = trusted_log.verify_note(note)
    if cosigned and checkpoint.size < trusted_log.size:  # none newer cosigned yet
        raise QuorumError(
            f"the newest cosigned checkpoint (size {checkpoint.size}) is older than the one "
            f"trusted here (size {trusted_log.size})",
            size=checkpoint.size,
        )
    trusted_log.stage(waited[: max(0, checkpoint.size - trusted_log.staged_size)])
    if checkpoint.size - trusted_log.staged_size >= TILES_FROM:
        _stage_tiles(trusted_log, client, checkpoint, note)
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


def _stage_tiles(
    trusted_log: TrustedLog, client: Client, checkpoint: Checkpoint, note: bytes
) -> None:
    """Stage the entries up to ``checkpoint`` read as tiles, if the registry offers them."""
    reader = TileReader(client)
    if not reader.offered():
        return
    try:
        for bundle in reader.bundles(checkpoint, trusted_log.staged_size):
            first = trusted_log.staged_size
            try:
                entries = [Entry.from_canonical(data) for data in bundle]
            except LedgerError as exc:
                raise ProtocolError(f"an entry of the bundle from entry {first}: {exc}") from exc
            trusted_log.stage(entries)
    except UntrustedLogError as exc:
        trusted_log.reject(exc.with_notes(trusted=b"", served=note))


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

    @property
    def view(self) -> View | None:
        """The last view verified (None before the first sync)."""
        ...

    def sync(self) -> View:
        """Verify what is new; return the view. Raises the lie's UntrustedLogError."""
        ...


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
        view = self._log.view
        if view is not None and view.witness_policy is not None:
            self._cosigned = True
        try:
            return catch_up(self._log, self._client, cosigned=self._cosigned)
        except (UntrustedLogError, QuorumError):
            raise
        except BaseException:
            self._log = TrustedLog(Trusted(), pins=self._pins)  # staged work is not verified
            raise


def verified_entry(client: Client, view: View, index: int) -> Entry:
    """Entry ``index`` as the registry serves it now, checked against the leaf hash ``view``
    verified under its checkpoint (so its inclusion is proven without a proof request). Raises
    :class:`ledger.errors.HistoryRewrittenError` when the bytes served differ."""
    entry = client.entry(index)
    if entry.leaf_hash != view.leaf(index):
        raise HistoryRewrittenError(
            f"entry {index} served now differs from the one verified",
            trusted=view.note,
            index=index,
        )
    return entry
