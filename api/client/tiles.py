"""Reading the log through the registry's C2SP tlog-tiles (``/v1/tile/...``), verified.

:class:`TileReader` fetches the entries a verified checkpoint covers as entry bundles of 256 and
holds each to that checkpoint before handing it on (:mod:`ledger.tileread`: the level-1 hash tiles
and the last partial bundle must rebuild the signed root; each full bundle must hash to its
level-1 hash), so what it yields is exactly what the registry signed, whatever the registry or a
cache holds. A few bundles are fetched at once, in order, so fetching overlaps the caller's work.

Whether the registry offers tiles is asked once (``tile/entries/000.p/1``, which exists in every
ledger: 404 means a registry without tiles, and the caller reads the entry pages instead). A tile
that the checkpoint covers and the registry then does not serve is a withheld entry. A bundle the
registry cannot frame (an entry over 65,535 bytes: ``tile-entry-too-large``) is read as pages and
held to the checkpoint the same way.

Full tiles never change, so with a ``cache`` directory the reader keeps the full entry bundles it
fetched and reads them from there next time (the few hash tiles are always fetched). The cache is
not trusted: a cached bundle is verified like a fetched one, and one that fails is dropped and
fetched again.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from api.errors import NotFoundError, ProblemError
from ledger import tiles
from ledger.checkpoint import Checkpoint
from ledger.errors import UnsignedEntriesError, WithheldEntriesError
from ledger.tileread import TileCheck, bundle_tile, level1_tiles, split_bundle
from ledger.tiles import WIDTH, Tile

PROBE = Tile(None, 0, 1)  # entry 0's bundle of width 1: in every ledger that offers tiles
AHEAD = 8  # bundles fetched ahead of the caller
THREADS = 2  # fetching them (more only compete for the caller's GIL)


TOO_LARGE = "tile-entry-too-large"


class TileSource(Protocol):
    """What the reader needs of a registry client (:meth:`api.client.registry.Client.tile`, and
    ``entry_records`` for a bundle the registry cannot frame)."""

    def tile(self, path: str) -> bytes: ...

    def entry_records(self, start: int = 0, limit: int = 1000) -> tuple[list[bytes], int]: ...


class TileReader:
    """The entries under a verified checkpoint, read through tiles from ``client``."""

    def __init__(self, client: TileSource, *, cache: Path | None = None) -> None:
        self._client = client
        self._cache = cache
        self._offered: bool | None = None

    def offered(self) -> bool:
        """Whether the registry serves tiles (asked once)."""
        if self._offered is None:
            try:
                self._client.tile(tiles.path(PROBE))
                self._offered = True
            except NotFoundError:
                self._offered = False
            except ProblemError as exc:
                if exc.slug != TOO_LARGE:
                    raise
                self._offered = True  # it serves tiles; it cannot frame entry 0 in one
        return self._offered

    def bundles(self, checkpoint: Checkpoint, start: int = 0) -> Iterator[list[bytes]]:
        """The entries from ``start`` to ``checkpoint.size``, bundle by bundle (the first one
        trimmed to begin at ``start``), each verified against ``checkpoint`` before it is
        yielded. Raises :class:`~ledger.errors.UnsignedEntriesError` for a bundle or hash tile
        that is not the signed tree's, :class:`~ledger.errors.WithheldEntriesError` for a tile
        the checkpoint covers that is not served, or the client's errors."""
        size = checkpoint.size
        if not 0 <= start < size:
            return
        last = bundle_tile(size // WIDTH, size) if size % WIDTH else None
        tail = self._bundle(last)[0] if last is not None else []
        level1 = [self._fetch(tile) for tile in level1_tiles(size)]
        check = TileCheck.build(checkpoint, level1, tail)
        with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="tiles") as pool:
            pending: deque[tuple[int, Future[list[bytes]]]] = deque()
            full = range(start // WIDTH, size // WIDTH)
            ahead = iter(full)
            for n in ahead:
                pending.append((n, pool.submit(self._full_bundle, check, n)))
                if len(pending) >= AHEAD:
                    break
            while pending:
                n, future = pending.popleft()
                entries = future.result()
                following = next(ahead, None)
                if following is not None:
                    pending.append((following, pool.submit(self._full_bundle, check, following)))
                yield entries[max(0, start - n * WIDTH) :]
        if tail:
            yield tail[max(0, start - (size // WIDTH) * WIDTH) :]

    def _full_bundle(self, check: TileCheck, n: int) -> list[bytes]:
        tile = Tile(None, n, WIDTH)
        cached = self._cached(tile)
        if cached is not None:
            try:
                entries = split_bundle(cached, tile)
                check.check(n, entries)
                return entries
            except UnsignedEntriesError:
                self._drop(tile)  # a damaged cache file: the registry's copy decides
        entries, data = self._bundle(tile)
        check.check(n, entries)
        if data is not None:
            self._keep(tile, data)
        return entries

    def _bundle(self, tile: Tile) -> tuple[list[bytes], bytes | None]:
        """The entries of bundle ``tile`` and the bundle's bytes; (the entries read as pages,
        None) when the registry cannot frame one of them in a bundle. Unverified."""
        try:
            data = self._fetch(tile)
        except ProblemError as exc:
            if exc.slug != TOO_LARGE:
                raise
            return self._paged(tile), None
        return split_bundle(data, tile), data

    def _paged(self, tile: Tile) -> list[bytes]:
        first = tile.index * WIDTH
        entries: list[bytes] = []
        while len(entries) < tile.width:
            records, _ = self._client.entry_records(first + len(entries), tile.width - len(entries))
            if not records:
                raise WithheldEntriesError(
                    f"the registry serves no entry {first + len(entries)}, which the checkpoint "
                    "covers",
                    index=first + len(entries),
                )
            entries += records
        return entries[: tile.width]

    def _fetch(self, tile: Tile) -> bytes:
        try:
            data = self._client.tile(tiles.path(tile))
        except NotFoundError as exc:
            first = tile.index * WIDTH << (8 * (tile.level or 0))
            raise WithheldEntriesError(
                f"the registry does not serve tile {tiles.path(tile)}, which the checkpoint "
                f"covers (entries from {first})",
                index=first,
            ) from exc
        return data

    # ---- the cache of full tiles (untrusted: everything read from it is verified)

    def _file(self, tile: Tile) -> Path | None:
        return None if self._cache is None else self._cache / tiles.path(tile)

    def _cached(self, tile: Tile) -> bytes | None:
        file = self._file(tile)
        try:
            return file.read_bytes() if file is not None else None
        except OSError:
            return None

    def _drop(self, tile: Tile) -> None:
        file = self._file(tile)
        if file is not None:
            file.unlink(missing_ok=True)

    def _keep(self, tile: Tile, data: bytes) -> None:
        """Keep a full tile (no fsync: a torn file fails verification and is fetched again)."""
        file = self._file(tile)
        if file is None or not tile.full:
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")
        except OSError:
            return  # a cache that cannot be written is only slower
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, file)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
