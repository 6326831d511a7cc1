"""The follower: brings the site's verified view of the ledger up to the registry's checkpoint.

Each ``sync``:

1. long-polls for entries after the cursor and folds each one into the replayed state with
   ``ledger.rules.apply`` (chain, signature, rules) and into the site's own Merkle tree;
2. fetches the registry's checkpoint, verifies its signature with the pinned log key, and fetches
   entries until the tree reaches the checkpoint's size;
3. checks that the tree's root at that size is the checkpoint's root (so every entry is verified
   against the tree), that the last trusted checkpoint is a prefix of it (our tree holds the
   verified history, and the registry's consistency proof must verify too), and only then
   persists the new cursor, checkpoint and state together.

A registry that rewrites or forks history fails step 3: :class:`ForkDetectedError` is raised and
both checkpoints are kept as evidence. Entries are acted on only once a checkpoint covers them.

Trust anchors: the genesis entry hash and the registry's log key, pinned in the site's config or,
when the config leaves them out, trusted on first use and then pinned (logged loudly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

from api.client.registry import Client
from ledger.checkpoint import Checkpoint, parse_verifier_key, verify_checkpoint
from ledger.errors import ChainError, LedgerError
from ledger.events import Entry
from ledger.merkle import verify_consistency
from ledger.rules import apply
from siteclient.errors import FeedError, ForkDetectedError
from siteclient.follow.state import Trusted, TrustStore

log = logging.getLogger(__name__)

PAGE = 1000


class Follower:
    def __init__(
        self,
        client: Client,
        store: TrustStore,
        *,
        log_key: str | None,
        genesis: str | None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self.trusted: Trusted = store.load()
        self._pinned_log_key = log_key
        self._pinned_genesis = genesis
        if log_key and self.trusted.log_key and self.trusted.log_key != log_key:
            raise FeedError("the configured log_key differs from the one this site pinned before")
        if genesis and self.trusted.genesis and self.trusted.genesis != genesis:
            raise FeedError("the configured genesis differs from the one this site pinned before")

    @property
    def size(self) -> int:
        return self.trusted.size

    def sync(
        self, wait: int = 0, *, act: Callable[[list[Entry]], None] | None = None
    ) -> list[Entry]:
        """Verify and fold in whatever the registry has beyond the cursor; return new entries.

        ``act``, if given, is called with the new entries once they are verified and before the
        new cursor is written to disk, so that work they start overlaps that write. (Acting
        first is safe: after a crash before the write the site verifies those entries again,
        and the agent does nothing twice that the ledger already records.)
        """
        trusted = self.trusted
        start = trusted.size
        fresh: list[Entry] = []
        page = self._client.entries(start, PAGE, wait=wait)
        self._fold(page.entries, fresh)
        note = self._client.checkpoint()
        checkpoint = self._verify_note(note)
        while trusted.tree.size < checkpoint.size:
            page = self._client.entries(
                trusted.tree.size, min(PAGE, checkpoint.size - trusted.tree.size)
            )
            if not page.entries:
                raise FeedError(
                    f"the checkpoint covers {checkpoint.size} entries but the registry serves "
                    f"only {trusted.tree.size}"
                )
            self._fold(page.entries, fresh)
        if trusted.tree.size > checkpoint.size:
            raise FeedError(
                f"the registry served {trusted.tree.size} entries but its checkpoint covers only "
                f"{checkpoint.size}"
            )
        self._check_consistency(checkpoint, note)
        trusted.checkpoint = note
        try:
            if act is not None:
                act(fresh)
        finally:
            if fresh or start == 0:
                self._store.save(trusted)
        return fresh

    def _fold(self, entries: tuple[Entry, ...], fresh: list[Entry]) -> None:
        trusted = self.trusted
        for entry in entries:
            if entry.index != trusted.tree.size:
                raise FeedError(
                    f"expected entry {trusted.tree.size}, the registry sent {entry.index}"
                )
            try:
                apply(trusted.state, entry)
            except ChainError as exc:
                # The entry after our verified history does not link to it: the registry now
                # serves another history than the one it signed for us before.
                self._fork(f"history was rewritten: {exc}", self._client.checkpoint())
            except LedgerError as exc:
                raise FeedError(
                    f"the registry served an entry that fails verification: {exc}"
                ) from exc
            if entry.index == 0:
                self._pin_genesis(entry)
            trusted.tree.append(entry.leaf_hash)
            fresh.append(entry)

    def _pin_genesis(self, entry: Entry) -> None:
        trusted = self.trusted
        if self._pinned_genesis is not None and entry.hash != self._pinned_genesis:
            raise FeedError(
                f"genesis entry hash is {entry.hash}, the site's config pins {self._pinned_genesis}"
            )
        if self._pinned_genesis is None and trusted.genesis is None:
            log.warning(
                "TRUST ON FIRST USE: pinning genesis %s of ledger %r; put it in config.json as "
                '"genesis" to pin it explicitly',
                entry.hash,
                trusted.state.origin,
            )
        if trusted.genesis is not None and trusted.genesis != entry.hash:
            raise FeedError(f"genesis entry hash {entry.hash} differs from the pinned one")
        trusted.genesis = entry.hash
        log_key = trusted.state.log_key
        if self._pinned_log_key is not None and log_key != self._pinned_log_key:
            raise FeedError(
                f"the genesis names log key {log_key!r}, the site's config pins "
                f"{self._pinned_log_key!r}"
            )
        if self._pinned_log_key is None and trusted.log_key is None:
            log.warning("TRUST ON FIRST USE: pinning the registry log key %s", log_key)
        trusted.log_key = log_key

    def _verify_note(self, note: bytes) -> Checkpoint:
        trusted = self.trusted
        if trusted.log_key is None:
            raise FeedError("the ledger has no genesis entry yet: nothing to trust")
        try:
            return verify_checkpoint(
                note, parse_verifier_key(trusted.log_key), origin=trusted.state.origin
            )
        except LedgerError as exc:
            raise FeedError(f"the registry's checkpoint does not verify: {exc}") from exc

    def _check_consistency(self, checkpoint: Checkpoint, note: bytes) -> None:
        trusted = self.trusted
        tree = trusted.tree
        if tree.root(checkpoint.size) != checkpoint.root:
            self._fork("the entries served do not hash to the checkpoint's root", note)
        if not trusted.checkpoint:
            return
        previous = self._verify_note(trusted.checkpoint)
        if checkpoint.size < previous.size:
            self._fork(
                f"the checkpoint went back from size {previous.size} to {checkpoint.size}", note
            )
        if tree.root(previous.size) != previous.root:
            self._fork(f"history up to {previous.size} was rewritten", note)
        if 0 < previous.size < checkpoint.size:
            try:
                proof = self._client.consistency_proof(previous.size, checkpoint.size)
                verify_consistency(
                    previous.size, checkpoint.size, previous.root, checkpoint.root, proof
                )
            except LedgerError as exc:
                self._fork(f"the registry's consistency proof fails: {exc}", note)

    def _fork(self, reason: str, note: bytes) -> NoReturn:
        folder = self._store.keep_evidence(
            f"fork-at-{self.trusted.size}", self.trusted.checkpoint, note
        )
        raise ForkDetectedError(f"{reason}; evidence kept in {folder}")
