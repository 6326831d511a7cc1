"""Load on a registry while the test breaks things, and the check afterwards.

:class:`Load` runs posting clients (threads, each a retrying :class:`Client`) and checkpoint
watchers (every distinct note any registry URL served during the run is kept). When the run is
over, :func:`check_ledger` reads the final ledger through the API and holds it to what the
clients were told: every acknowledged event (a 2xx with an index) sits at its acknowledged index
with its acknowledged hash, no event id appears twice, the indexes are dense from 0 (also in the
database's rows, on PostgreSQL), the chain and signatures verify, and every checkpoint seen
verifies with the log key and is the root of the final tree's prefix of its size (and, for a
spread of them, the registry's consistency proof from it to the final checkpoint verifies). And
no client gave up on a post: each was answered within its retries.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from api.client.registry import Client
from api.client.transport import RetryPolicy
from api.errors import ApiError
from crypto import SigningKey
from ledger.bodies import Task
from ledger.checkpoint import (
    NoteVerifier,
    parse_verifier_key,
    unverified_size,
    verifier_key,
    verify_checkpoint,
)
from ledger.events import Entry, SignedEvent, new_event
from ledger.proofs import verify_consistency
from ledger.verify import verify_ledger

POSTER_RETRY = RetryPolicy(attempts=40, backoff=0.05, max_backoff=0.5)
ONCE = RetryPolicy(attempts=1)
WATCH_EVERY = 0.05
PROOFS = 100  # consistency proofs asked of the registry at the end


@dataclass
class Seen:
    acknowledged: dict[str, tuple[int, str]] = field(default_factory=dict)  # id: index, hash
    attempted: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # answered 503 while the store was gone
    checkpoints: set[bytes] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)  # what the clients gave up on
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acks(self) -> int:
        with self.lock:
            return len(self.acknowledged)


class Load:
    """``clients`` threads posting fresh task events as ``key`` (client n to ``urls[n % len]``),
    and one thread per URL of ``urls`` and ``watch`` polling ``GET /v1/checkpoint``, until
    :meth:`stop`."""

    def __init__(
        self,
        urls: Sequence[str],
        key: SigningKey,
        origin: str,
        *,
        clients: int = 8,
        watch: Sequence[str] = (),
    ) -> None:
        assert not isinstance(urls, str), "a list of URLs"
        self.seen = Seen()
        self.key, self._origin = key, origin
        self._stop = threading.Event()
        self._extra = itertools.count()  # events of the test's own (client number -1)
        self._threads = [
            threading.Thread(target=self._post, args=(n, urls[n % len(urls)]), daemon=True)
            for n in range(clients)
        ]
        self._threads += [
            threading.Thread(target=self._watch, args=(u,), daemon=True)
            for u in dict.fromkeys([*urls, *watch])
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self._threads), "a load thread did not stop"

    def event(self, client: int, n: int) -> SignedEvent:
        body = Task(image="myconsortium/avg:1", sites=("site-a",), config={"c": client, "n": n})
        event = new_event(body, ledger=self._origin, author=self.key.key_id)
        return SignedEvent.sign(event, self.key)

    def post_to(self, url: str) -> None:
        """Post one fresh event to ``url`` (retried as the clients do), recorded as theirs are."""
        with Client(url, self.key, retry=POSTER_RETRY, timeout=10) as client:
            signed = self.event(-1, next(self._extra))
            with self.seen.lock:
                self.seen.attempted.add(signed.event.id)
            appended = client.post_event(signed)
        with self.seen.lock:
            self.seen.acknowledged[appended.event_id] = (appended.index, appended.hash)

    def _post(self, number: int, url: str) -> None:
        seen = self.seen
        with Client(url, self.key, retry=POSTER_RETRY, timeout=10) as client:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                signed = self.event(number, n)
                with seen.lock:
                    seen.attempted.add(signed.event.id)
                try:
                    appended = client.post_event(signed)
                except ApiError as exc:
                    with seen.lock:
                        seen.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with seen.lock:
                    seen.acknowledged[appended.event_id] = (appended.index, appended.hash)

    def _watch(self, url: str) -> None:
        with Client(url, retry=ONCE, timeout=5, connect_timeout=1) as client:
            while not self._stop.wait(WATCH_EVERY):
                try:
                    note = client.checkpoint()
                except ApiError:
                    continue  # a replica being killed or restarted
                with self.seen.lock:
                    self.seen.checkpoints.add(note)


def wait_until(what: str, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``done`` until it holds; fail naming ``what`` after ``timeout`` (a hang guard)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def settle(urls: Sequence[str]) -> None:
    """Wait until every registry at ``urls`` serves the same size, and a checkpoint of it (each
    replica catches up within a second; an integrating replica may sign a moment later)."""

    def same() -> bool:
        sizes = set()
        for url in urls:
            with Client(url, retry=ONCE, timeout=5) as client:
                try:
                    sizes |= {client.health(), unverified_size(client.checkpoint())}
                except ApiError:
                    return False
        return len(sizes) == 1

    wait_until("the replicas agree on the ledger's size and sign it", same)


def log_verifier(data: Path, origin: str) -> NoteVerifier:
    """The checkpoint verifier of the registry whose data directory (``pht init``'s) is ``data``."""
    return parse_verifier_key(verifier_key(origin, SigningKey.load(data / "log.key").public))


def read_all(client: Client) -> list[bytes]:
    records: list[bytes] = []
    while True:
        page, size = client.entry_records(len(records), 1000)
        records += page
        if len(records) >= size or not page:
            return records


def check_ledger(
    client: Client, seen: Seen, verifier: NoteVerifier, origin: str, dsn: str | None = None
) -> list[Entry]:
    """The final ledger as ``client`` reads it, held to everything ``seen`` (see the module);
    ``dsn``: the PostgreSQL store's, whose rows are checked too."""
    records = read_all(client)
    verified = verify_ledger(records)
    entries = [Entry.from_canonical(r) for r in records]
    size = len(entries)
    assert [e.index for e in entries] == list(range(size)), "indexes are not dense from 0"
    if dsn is not None:
        import psycopg  # only the PostgreSQL tests need it

        with psycopg.connect(dsn) as conn:
            rows = [int(r[0]) for r in conn.execute("SELECT idx FROM pht_entries ORDER BY idx")]
        assert rows == list(range(size)), "the database's rows are not the ledger's indexes"

    ids = [e.event.event.id for e in entries[1:]]
    assert len(ids) == len(set(ids)), "an event was appended twice"
    with seen.lock:
        print(  # shown with -s, or when a test fails
            f"ledger {size}, acknowledged {len(seen.acknowledged)}, attempted "
            f"{len(seen.attempted)}, checkpoints {len(seen.checkpoints)}"
        )
        assert set(ids) <= seen.attempted, "an event nobody posted is in the ledger"
        assert not seen.refused & set(ids), "an event refused with 503 was appended"
        for event_id, (index, entry_hash) in seen.acknowledged.items():
            assert index < size, f"acknowledged entry {index} is beyond the ledger ({size})"
            assert entries[index].event.event.id == event_id, f"entry {index} lost its event"
            assert entries[index].hash == entry_hash
        notes = sorted(seen.checkpoints)

    final = verify_checkpoint(client.checkpoint(), verifier, origin=origin)
    assert final.size == size and final.root == verified.tree.root()
    assert notes, "no checkpoint was observed"
    for n, note in enumerate(notes):
        cp = verify_checkpoint(note, verifier, origin=origin)
        assert cp.size <= size, f"a checkpoint of size {cp.size} beyond the ledger ({size})"
        assert cp.root == verified.tree.root(cp.size), f"checkpoint {cp.size} is another tree"
        if n % max(1, len(notes) // PROOFS) == 0:  # the registry's proofs, for a spread of them
            proof = client.consistency_proof(cp.size, size) if cp.size < size else []
            verify_consistency(cp.size, size, cp.root, final.root, proof)
    assert not seen.failures, f"clients gave up on {len(seen.failures)}: {seen.failures[:3]}"
    return entries
