"""Whole-ledger verification: every hash, the chain, every signature, every rule, the Merkle root.

``verify_ledger`` replays a sequence of stored entry records (canonical bytes) from index 0 and
returns the replayed state and the Merkle tree, or raises :class:`VerificationError` naming the
first bad entry and why. It is what ``pht audit`` and the registry's own self-check run.

With ``workers > 1`` the Ed25519 signature checks, the dominant cost, run in worker processes
while this process parses, checks canonical form, the chain and the rules. Public keys are
collected up front from the (rare) consortium and member events, found by a byte search, so a
worker can check any signature by its author key id; the rules then decide whether that key was a
current member at that point of the history.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from crypto import BadSignatureError, PublicKey, Purpose, domain_bytes
from ledger.canonical import canonical_bytes
from ledger.errors import LedgerError, VerificationError
from ledger.events import Entry
from ledger.merkle import MerkleTree
from ledger.rules import apply
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


def _check_signatures(args: tuple[int, list[bytes], dict[str, bytes]]) -> tuple[int, str] | None:
    """Worker: check the signature of each record; the first failure as (index, reason)."""
    first, records, keys = args
    cache: dict[str, PublicKey] = {}
    for offset, data in enumerate(records):
        try:
            envelope = json.loads(data)["event"]
            event = envelope["event"]
            raw = keys.get(event["author"])
            if raw is None:
                continue  # not a key of any member: the rules pass reports it
            key = cache.get(event["author"]) or cache.setdefault(event["author"], PublicKey(raw))
            key.verify(
                base64.b64decode(envelope["sig"]),
                domain_bytes(Purpose.EVENT, canonical_bytes(event)),
            )
        except BadSignatureError:
            return first + offset, "signature does not verify for its author"
        except Exception:  # noqa: S112 - malformed records are reported by the main pass
            continue
    return None


def verify_ledger(
    records: Sequence[bytes],
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> VerifiedLedger:
    """Replay ``records`` from index 0; raise :class:`VerificationError` at the first bad one."""
    if workers <= 1:
        return _replay(records, signatures_checked=False, progress=progress)
    keys = _collect_keys(records)
    jobs = [
        (start, list(records[start : start + CHUNK]), keys)
        for start in range(0, len(records), CHUNK)
    ]
    failures: list[tuple[int, str]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = pool.map(_check_signatures, jobs)
        try:
            verified = _replay(records, signatures_checked=True, progress=progress)
        except VerificationError as exc:
            failures.append((exc.index or 0, exc.reason))
        failures += [failure for failure in pending if failure is not None]
    if failures:
        # Report the earliest problem, whichever pass found it.
        index, reason = min(failures)
        raise VerificationError(index, reason)
    return verified


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
