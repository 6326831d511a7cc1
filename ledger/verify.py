"""Whole-ledger verification: every hash, the chain, every signature, every rule, the Merkle root.

``verify_ledger`` replays a sequence of stored entry records (canonical bytes) from index 0 and
returns the replayed state and the Merkle tree, or raises :class:`VerificationError` naming the
first bad entry and why. It is what ``pht audit`` and the registry's own self-check run.

With ``workers > 1`` the per-entry work (parsing, the canonical-form check, hashing and the
Ed25519 signature check, the dominant cost) runs in worker processes on chunks of records; each
returns compact :class:`~ledger.rules.Facts` per entry, and this process runs the same rules
(``apply_facts``, which ``apply`` uses too) on them in order, with the workers' signature verdicts
placed at the rules' signature step. Public keys are collected up front from the (rare) consortium
and member events, found by a byte search, so a worker can check any signature by its author key
id; the rules then decide whether that key was a current member at that point of the history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from crypto import BadSignatureError, PublicKey
from ledger.bodies import EventKind
from ledger.errors import LedgerError, VerificationError
from ledger.events import Entry
from ledger.merkle import MerkleTree
from ledger.rules import Facts, apply, apply_facts, bad_signature, check_signature, facts_of
from ledger.state import State

Progress = Callable[[int], None]
CHUNK = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedLedger:
    state: State
    tree: MerkleTree

    @property
    def size(self) -> int:
        return self.tree.size


def _collect_keys(records: Sequence[bytes]) -> dict[str, bytes]:
    """Every public key named by any consortium or member event: key id -> raw bytes."""
    keys: dict[str, bytes] = {}
    for data in records:
        if b'"kind":"member"' not in data and b'"kind":"consortium"' not in data:
            continue
        try:
            body = json.loads(data)["event"]["event"]["body"]
            specs = body.get("members", [body])
            for spec in specs:
                key = PublicKey.from_b64(spec["public_key"])
                keys[key.key_id] = key.raw
        except Exception:  # noqa: S112 - malformed: the main pass reports it with its index
            continue
    return keys


def verify_ledger(
    records: Sequence[bytes],
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> VerifiedLedger:
    """Replay ``records`` from index 0; raise :class:`VerificationError` at the first bad one."""
    if workers <= 1:
        return _replay(records, signatures_checked=False, progress=progress)
    return _verify_parallel(_jobs([records], []), records, workers, progress)


def verify_chunks(
    chunks: Iterable[Sequence[bytes]],
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> tuple[VerifiedLedger, list[bytes]]:
    """:func:`verify_ledger` for records that arrive in chunks (pages fetched from a registry);
    returns the verified ledger and all the records. With ``workers`` > 1 each chunk goes to a
    worker as soon as it arrives, so fetching and verifying overlap."""
    records: list[bytes] = []
    if workers <= 1:
        for chunk in chunks:
            records.extend(chunk)
        return _replay(records, signatures_checked=False, progress=progress), records
    return _verify_parallel(_jobs(chunks, records), records, workers, progress), records


Job = tuple[int, list[bytes], dict[str, bytes]]


def _jobs(chunks: Iterable[Sequence[bytes]], records: list[bytes]) -> Iterator[Job]:
    """Worker jobs of at most CHUNK records, each with the keys of every consortium and member
    event up to the end of its chunk (an author must be a member before it may sign, so a key
    named later can only belong to an entry the rules refuse anyway). Fills ``records``."""
    keys: dict[str, bytes] = {}
    for chunk in chunks:
        start = len(records)
        records.extend(chunk)
        keys.update(_collect_keys(chunk))
        for offset in range(0, len(chunk), CHUNK):
            yield start + offset, list(chunk[offset : offset + CHUNK]), dict(keys)


Packed = tuple[Any, ...]
"""A worker's verdict on one entry: its :class:`Facts` (the kind as text), leaf hash, and whether
its signature verified (None: the author's key is not in the ledger, so nothing was checked)."""


def _check_chunk(
    args: tuple[int, list[bytes], dict[str, bytes]],
) -> tuple[list[Packed], tuple[int, str] | None]:
    """Worker: parse, canonical-check, hash and signature-check a chunk of records.

    Returns the packed verdicts of the entries before the first unreadable record, and that
    record's (index, reason) if there is one.
    """
    first, records, keys = args
    cache: dict[str, PublicKey] = {}
    packed: list[Packed] = []
    for offset, data in enumerate(records):
        try:
            entry = Entry.from_canonical(data)
        except LedgerError as exc:
            return packed, (first + offset, str(exc))
        signed = entry.event
        author = signed.event.author
        key = cache.get(author)
        if key is None and author in keys:
            key = cache[author] = PublicKey(keys[author])
        verdict: bool | None = None
        if key is not None:
            try:
                key.verify(signed.sig, signed.event.signing_bytes())
                verdict = True
            except BadSignatureError:
                verdict = False
        facts = facts_of(entry)
        packed.append((*facts[:4], facts.kind.value, *facts[5:], entry.leaf_hash, verdict))
    return packed, None


def _verify_parallel(
    jobs: Iterable[Job], records: Sequence[bytes], workers: int, progress: Progress | None
) -> VerifiedLedger:
    """Workers check chunks; this process applies the rules to their verdicts in order.
    ``Executor.map`` submits every job before the first result is read, so when ``jobs`` fetches
    its chunks, the workers verify early chunks while later ones are still arriving."""
    state = State()
    tree = MerkleTree()
    seen: set[str] = set()
    kinds = {kind.value: kind for kind in EventKind}
    index = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for packed, failure in pool.map(_check_chunk, jobs):
            for item in packed:
                facts = Facts._make((*item[:4], kinds[item[4]], *item[5:-2]))
                try:
                    if facts.position != index:
                        raise VerificationError(index, f"record holds entry {facts.position}")
                    if facts.event_id in seen:
                        raise VerificationError(index, "the same event appears twice in the ledger")
                    apply_facts(state, facts, _signature_check(records, index, item[-1]))
                except VerificationError:
                    raise
                except LedgerError as exc:
                    raise VerificationError(index, str(exc)) from exc
                seen.add(facts.event_id)
                tree.append(item[-2])
                index += 1
                if progress is not None and index % CHUNK == 0:
                    progress(index)
            if failure is not None:
                raise VerificationError(*failure)
    return VerifiedLedger(state=state, tree=tree)


def _signature_check(
    records: Sequence[bytes], index: int, verdict: bool | None
) -> Callable[[PublicKey], None] | None:
    """What the rules do at their signature step, given a worker's verdict."""
    if verdict:
        return None
    if verdict is None:
        # The worker knew no key by that id (the rules refuse such an author before this step).
        return partial(check_signature, Entry.from_canonical(records[index]))

    def refuse(key: PublicKey) -> None:
        raise bad_signature(index, key)

    return refuse


def _replay(
    records: Iterable[bytes], *, signatures_checked: bool, progress: Progress | None
) -> VerifiedLedger:
    state = State()
    tree = MerkleTree()
    seen: set[str] = set()
    for index, data in enumerate(records):
        try:
            entry = Entry.from_canonical(data)
            if entry.index != index:
                raise VerificationError(index, f"record holds entry {entry.index}")
            if entry.event.event.id in seen:
                raise VerificationError(index, "the same event appears twice in the ledger")
            apply(state, entry, signature_checked=signatures_checked)
        except VerificationError:
            raise
        except LedgerError as exc:
            raise VerificationError(index, str(exc)) from exc
        seen.add(entry.event.event.id)
        tree.append(entry.leaf_hash)
        if progress is not None and index % CHUNK == CHUNK - 1:
            progress(index + 1)
    return VerifiedLedger(state=state, tree=tree)
