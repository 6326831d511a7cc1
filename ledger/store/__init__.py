"""The embedded store, and :class:`Store`: what the ledger needs from the store of its entries.

Invariant: :class:`ledger.store.ledger.Ledger` reaches its entries only through :class:`Store`;
:class:`ledger.store.entries.EntryStore` implements it over one data directory's files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO, Protocol


class Store(Protocol):
    """The entries of one ledger, as opaque payloads (each entry's canonical bytes) numbered from 0
    in append order; a second backend (PostgreSQL) implements exactly this.

    - ``append_batch`` appends the payloads as the next entries, all or none, and returns only
      once they are durable: the ledger acknowledges an append when it returns. It raises
      StoreError when it cannot (and may refuse further appends until reopened).
      ``append_sequenced(decide)`` is the same, for a store other processes may append to too:
      with the next index reserved, it calls ``decide`` with the entries others appended since
      this process last looked (``count`` grows by them), and appends the payloads it returns.
      ``catch_up(adopt)`` hands ``adopt`` those entries without appending (with the checkpoint
      the integrator published last, when it is newer), and ``watch(wake, elected)`` calls
      ``wake`` from a thread of the store's whenever there may be some. A store only one
      process writes (the embedded one) never has any: ``decide`` gets none, the others do
      nothing.
    - Integrating: of the processes sharing a store, one at a time signs checkpoints.
      ``campaign`` stands for it (one attempt now; ``watch`` keeps trying and calls ``elected``
      on each win), ``integrating`` says whether this process signs now (always, for a store
      one process writes). ``shared`` says whether other processes may append; if so,
      ``publish(note, written)`` stores a newly signed checkpoint for all of them without
      blocking, and calls ``written(note)`` once it is stored.
    - ``count`` is the number of durable entries. ``read`` and ``read_range`` give payloads,
      raising StoreError out of range and DamagedEntryError naming an entry whose stored bytes
      are damaged; ``checksums=False`` may skip the store's own checksums (the ledger checks every
      payload it serves against its Merkle leaf). ``read_range_scanned`` reads the same entries
      without trusting any index past ``start``, to say what a damaged entry's record holds.
    - The store's bytes: the entries are laid out as one byte sequence (the embedded store's
      log file; another backend, the concatenation of its framed records). ``offset(i)`` is
      where entry ``i`` starts in it (its length for ``i == count``); ``start_digest(at)`` hashes
      it once, returns the SHA-256 (hex) of the bytes before entry ``at``, and from then on the
      store keeps ``digest()``, (length, SHA-256 of the whole sequence), up to date as it
      appends. A snapshot records ``digest()``, and the next open checks the entries it covers
      against it with one hash.
    - ``sync_index`` makes durable whatever derived data a snapshot relies on (a no-op where
      there is none); ``close`` releases the store and is idempotent.
    - ``save_checkpoint`` keeps the latest signed checkpoint note durably, replacing the one
      before (whole or not at all); ``stored_checkpoint`` gives it (None before the first), and
      ``checkpoint_place`` says where it is kept, for messages. The next open checks the entries
      against it: a store that lost acknowledged entries is refused.
    """

    @property
    def count(self) -> int: ...

    def append_batch(self, payloads: Sequence[bytes]) -> None: ...

    def append_sequenced(self, decide: Callable[[Sequence[bytes]], list[bytes]]) -> None: ...

    def catch_up(self, adopt: Callable[[Sequence[bytes], bytes | None], None]) -> None: ...

    def watch(self, wake: Callable[[], None], elected: Callable[[], None]) -> None: ...

    def campaign(self) -> None: ...

    def integrating(self) -> bool: ...

    @property
    def shared(self) -> bool: ...

    def publish(self, note: bytes, written: Callable[[bytes], None]) -> None: ...

    def read(self, index: int) -> bytes: ...

    def read_range(self, start: int, stop: int, *, checksums: bool = True) -> list[bytes]: ...

    def read_range_scanned(self, start: int, stop: int) -> list[bytes]: ...

    def offset(self, index: int) -> int: ...

    def start_digest(self, at: int) -> str: ...

    def digest(self) -> tuple[int, str]: ...

    def sync_index(self) -> None: ...

    def save_checkpoint(self, note: bytes) -> None: ...

    def stored_checkpoint(self) -> bytes | None: ...

    @property
    def checkpoint_place(self) -> str: ...

    def close(self) -> None: ...


class Blobs(Protocol):
    """What the registry asks of its blob store (content-addressed by SHA-256, hex): the data
    directory's :class:`ledger.store.blobs.BlobStore`, or the database's
    :class:`ledger.store.postgres.blobs.PostgresBlobs`. ``open_verified`` hands out a handle
    at offset 0 only once the bytes hash to their name."""

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def put(
        self, data: bytes, expected_sha256: str | None = None, *, max_size: int | None = None
    ) -> str: ...

    def put_stream(
        self,
        source: bytes | Iterable[bytes] | BinaryIO,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> tuple[str, int]: ...

    def open_verified(self, sha256: str) -> BinaryIO: ...

    def names(self) -> Iterator[str]: ...

    def close(self) -> None: ...
