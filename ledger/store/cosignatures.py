"""The registry's book of witness cosignatures (DESIGN 12), kept beside the entry log.

A member holding a ``witness_key`` sends the registry a C2SP cosignature/v1 line for a checkpoint
size. :meth:`CosignatureBook.add` accepts it only when:

- the size is one the registry signed a checkpoint for (it remembers the recent sizes it signed,
  and every size it holds cosignatures for); the checkpoint is rebuilt from the tree's root at
  that size, so a cosignature over a root, origin or size the registry never signed never
  verifies;
- the line is by the sender's own published witness key (name and key hash), and verifies over
  that checkpoint's body;
- its timestamp is not more than :data:`FUTURE_SKEW` s ahead of the registry's clock (the
  same 10 minutes as an event's ``time``, :mod:`ledger.timewindow`); an old timestamp is fine,
  as a witness may send a cosignature again after an outage;
- the size is not below the newest one this witness cosigned (a replayed older cosignature is
  refused; the same line again is accepted once, idempotently).

Accepted lines are kept by a :class:`CosignatureLines`: by default :class:`FileLines`, which
appends them to ``cosignatures.log`` (one JSON object a line; a torn last line is ignored on open),
written out and fsync'd within :data:`SYNC_INTERVAL` s of the answer (and on
close). One fsync per cosignature costs the append path a third of its throughput (they share
the disk; ``bench/witness_bench.py``); losing the last fraction of a second of cosignatures in a
crash is harmless: nothing is trusted on them (each is verified again by every reader), each
witness keeps its own record, and the witnesses cosign the next checkpoint as it comes). They
are held in memory by size. :meth:`cosigned_note` serves the log's signed note for the newest
size whose cosignatures meet the witness policy's quorum (or, before any size does, the newest
size with any cosignature; with none at all, the latest checkpoint), with every cosignature line
held for it appended: one C2SP signed note.
Registry processes sharing a PostgreSQL ledger share its lines
(:class:`ledger.store.postgres.cosignatures.PostgresLines`): ``pull`` takes in the lines the
others accepted (before judging a new one, and before serving a cosigned checkpoint), so each
process serves every cosignature and refuses an older one whichever process took the newer.
Ed25519 signing is deterministic, so re-signing a checkpoint gives the note signed before.

Refusals raise :class:`CosignatureError` (the API answers 422 ``bad-cosignature``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from crypto import SigningKey
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import (
    WitnessKey,
    line_key,
    parse_witness_key,
    verify_cosignature,
    with_cosignatures,
)
from ledger.errors import CosignatureError, StoreError
from ledger.state import MemberRecord
from ledger.witness_policy import WitnessPolicy, cosigners

COSIGNATURES_FILE = "cosignatures.log"
RECENT_SIZES = 4096
SYNC_INTERVAL = 0.25
FUTURE_SKEW = 600  # seconds a cosignature's timestamp may lie ahead of the registry's clock


Record = tuple[int, str, str]  # size, witness (member name), cosignature line


class CosignatureLines(Protocol):
    """Where accepted lines are kept: ``load`` gives all (once, on open), ``add`` keeps one,
    ``newer`` gives those other processes added since (none for a file of one process)."""

    def load(self) -> Iterable[Record]: ...

    def add(self, record: Record) -> None: ...

    def newer(self) -> Iterable[Record]: ...

    def close(self) -> None: ...


def read_file_lines(data_dir: Path) -> list[Record]:
    """The lines ``cosignatures.log`` in ``data_dir`` holds (none without the file), read
    without opening it for writing (``pht store copy`` reads a source this way)."""
    path = Path(data_dir) / COSIGNATURES_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"cannot read {path.name}: {exc.strerror}") from exc
    records: list[Record] = []
    for raw in data.split(b"\n"):
        try:
            record = json.loads(raw)
            records.append((record["size"], record["witness"], record["line"]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line
    return records


class FileLines:
    """``cosignatures.log`` in a data directory, fsync'd every ``sync_interval`` s (module)."""

    def __init__(self, data_dir: Path, sync_interval: float = SYNC_INTERVAL) -> None:
        self._path = Path(data_dir) / COSIGNATURES_FILE
        self._lock = threading.Lock()
        self._dirty = False
        self._sync_interval = sync_interval
        self._closing = threading.Event()
        self._file = open(self._path, "ab")  # noqa: SIM115 (held open: appended to for life)
        self._flusher = threading.Thread(
            target=self._flush_loop, name="cosignature-sync", daemon=True
        )
        self._flusher.start()

    def load(self) -> Iterable[Record]:
        return read_file_lines(self._path.parent)

    def add(self, record: Record) -> None:
        size, witness, line = record
        text = json.dumps({"size": size, "witness": witness, "line": line}, sort_keys=True)
        with self._lock:
            try:  # written out and fsync'd by the flusher (see the module docstring)
                self._file.write(text.encode() + b"\n")
            except OSError as exc:
                raise StoreError(f"cannot append to {self._path.name}: {exc.strerror}") from exc
            self._dirty = True

    def newer(self) -> Iterable[Record]:
        return ()

    def _flush_loop(self) -> None:
        while not self._closing.wait(self._sync_interval):
            self.sync()

    def sync(self) -> None:
        """fsync what was appended (the flusher calls it every ``sync_interval`` s)."""
        with self._lock:
            if not self._dirty or self._file.closed:
                return
            self._dirty = False
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise StoreError(f"cannot sync {self._path.name}: {exc.strerror}") from exc

    def close(self) -> None:
        self._closing.set()
        self._flusher.join()
        self.sync()
        with self._lock:
            self._file.close()


class CosignatureBook:
    """Cosignatures by checkpoint size, kept by ``lines`` (default: a file in ``data_dir``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        origin: Callable[[], str],
        root: Callable[[int], bytes],
        log_key: SigningKey,
        policy: Callable[[], WitnessPolicy | None],
        sync_interval: float = SYNC_INTERVAL,
        now: Callable[[], float] = time.time,
        lines: CosignatureLines | None = None,
    ) -> None:
        self._origin, self._root, self._log_key, self._policy = origin, root, log_key, policy
        self._lock = threading.Lock()
        self._now = now
        self._signed: OrderedDict[int, bytes] = OrderedDict()  # recent size -> root signed
        self._lines: dict[int, dict[str, str]] = {}  # size -> witness name -> line
        self._newest: dict[str, int] = {}  # witness name -> newest size it cosigned
        self._witness_keys: dict[str, WitnessKey] = {}  # published key text -> parsed
        self._store = lines if lines is not None else FileLines(data_dir, sync_interval)
        try:
            for size, witness, line in self._store.load():
                self._hold(size, witness, line)
        except BaseException:
            self._store.close()
            raise

    def pull(self) -> None:
        """Take in the lines other registry processes on a shared ledger accepted."""
        newer = list(self._store.newer())
        if newer:
            with self._lock:
                for size, witness, line in newer:
                    self._hold(size, witness, line)

    def _hold(self, size: int, witness: str, line: str) -> None:
        self._lines.setdefault(size, {})[witness] = line
        self._newest[witness] = max(size, self._newest.get(witness, 0))

    def signed(self, checkpoint: Checkpoint) -> None:
        """The registry signed ``checkpoint`` (called by the ledger at each signing); its root is
        kept, so that checking a cosignature never recomputes a root under the ledger's lock."""
        with self._lock:
            self._signed[checkpoint.size] = checkpoint.root
            while len(self._signed) > RECENT_SIZES:
                self._signed.popitem(last=False)

    def checkpoint(self, size: int) -> Checkpoint:
        with self._lock:
            root = self._signed.get(size)
        if root is None:  # held from before a restart: the tree's root at that size
            root = self._root(size)
        return Checkpoint(origin=self._origin(), size=size, root=root)

    def add(self, member: MemberRecord, size: int, line: str) -> bool:
        """Accept ``line`` from ``member`` for the checkpoint of ``size``; True when new."""
        if member.witness_key is None or not member.active:
            raise CosignatureError(f"{member.name!r} has published no witness key")
        witness = self._witness_key(member.witness_key)
        name, key_hash = line_key(line)
        if (name, key_hash) != (witness.name, witness.key_hash):
            raise CosignatureError(
                f"the cosignature is by {name}+{key_hash.hex()}, not by {member.name!r}'s "
                f"witness key {witness.name}+{witness.key_hash.hex()}"
            )
        with self._lock:
            if self._lines.get(size, {}).get(member.name) == line:
                return False  # a retry: these very bytes were verified when first taken
            known = size in self._signed or size in self._lines
        if not known:
            raise CosignatureError(f"the registry signed no recent checkpoint of size {size}")
        # Outside the book's lock: the root is the ledger's (the ledger calls signed() under its
        # own lock, so the book never waits for the ledger while holding its lock).
        checkpoint = self.checkpoint(size)
        cosignature = verify_cosignature(line, checkpoint, witness)
        self.pull()  # what other processes took, so the order check below sees it
        if cosignature.time > self._now() + FUTURE_SKEW:
            raise CosignatureError(
                f"the cosignature is dated {cosignature.time}, more than {FUTURE_SKEW} s ahead "
                f"of the registry's clock ({int(self._now())}): check the witness's clock"
            )
        with self._lock:
            held = self._lines.get(size, {}).get(member.name)
            if held == line:
                return False
            newest = self._newest.get(member.name, -1)
            if size < newest or (size == newest and held is not None):
                raise CosignatureError(
                    f"{member.name!r} already cosigned size {newest}; a cosignature for size "
                    f"{size} is older or replayed"
                )
            self._store.add((size, member.name, line))
            self._hold(size, member.name, line)
        return True

    def _witness_key(self, text: str) -> WitnessKey:
        """``parse_witness_key``, remembered per key text (parsing costs as much as verifying)."""
        witness = self._witness_keys.get(text)
        if witness is None:
            witness = parse_witness_key(text)
            if len(self._witness_keys) >= RECENT_SIZES:
                self._witness_keys.clear()
            self._witness_keys[text] = witness
        return witness

    def cosigned_note(self, latest: bytes, latest_size: int) -> bytes:
        """The newest cosigned checkpoint with all its cosignature lines (see the module)."""
        policy = self._policy()
        with self._lock:
            held = {
                s: sorted(lines.values()) for s, lines in self._lines.items() if s <= latest_size
            }
        sizes = sorted(held, reverse=True)
        if not sizes:
            return latest
        if policy is not None:
            for size in sizes[:64]:  # the newest that meets the quorum is near the top
                checkpoint = self.checkpoint(size)
                note = self._note(checkpoint, held[size])
                if policy.satisfied(cosigners(note, checkpoint, policy)):
                    return note
        return self._note(self.checkpoint(sizes[0]), held[sizes[0]])

    def _note(self, checkpoint: Checkpoint, lines: list[str]) -> bytes:
        return with_cosignatures(sign_checkpoint(checkpoint, self._log_key), lines)

    def newest(self, witness: str) -> int:
        """The newest size ``witness`` cosigned (0 for none)."""
        with self._lock:
            return self._newest.get(witness, 0)

    def witnesses_of(self, size: int) -> list[str]:
        with self._lock:
            return sorted(self._lines.get(size, {}))

    def close(self) -> None:
        self._store.close()
