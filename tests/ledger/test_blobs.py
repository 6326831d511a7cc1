"""The blob store on real files: content addressing, refusals, and no stray temp files."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.errors import BlobError, DamagedBlobError
from ledger.store.blobs import BlobStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "objects")


def stored_files(blobs: BlobStore) -> list[Path]:
    return sorted(p for p in blobs.root.rglob("*") if p.is_file())


def tmp_files(blobs: BlobStore) -> list[Path]:
    return list((blobs.root / "tmp").iterdir())


def test_put_then_read_back(blobs: BlobStore) -> None:
    data = b"config: {}\n" * 100
    digest = blobs.put(data)
    assert digest == sha(data)
    assert blobs.path(digest) == blobs.root / digest[:2] / digest[2:]
    assert blobs.exists(digest)
    assert blobs.size(digest) == len(data)
    with blobs.open(digest) as blob:
        assert blob.read() == data
    assert blobs.verify(digest) == len(data)
    assert tmp_files(blobs) == []


def test_put_stream_from_file_and_chunks(blobs: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    assert blobs.put_stream(io.BytesIO(data), sha(data)) == (sha(data), len(data))
    chunks = [data[i : i + 1000] for i in range(0, 5000, 1000)]
    assert blobs.put_stream(iter(chunks)) == (sha(data[:5000]), 5000)
    assert blobs.put_stream(b"") == (sha(b""), 0)


def test_rejects_hash_mismatch_and_cleans_temp(blobs: BlobStore) -> None:
    claimed = sha(b"what the event names")
    with pytest.raises(BlobError) as caught:
        blobs.put(b"what was uploaded", claimed)
    message = str(caught.value)
    assert f"expected sha256 {claimed}" in message
    assert f"found {sha(b'what was uploaded')}" in message
    assert stored_files(blobs) == []
    assert not blobs.exists(claimed)


def test_rejects_oversize_without_reading_everything(blobs: BlobStore) -> None:
    consumed = 0

    def endless() -> Iterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1
            yield b"x" * 1000

    with pytest.raises(BlobError, match="expected at most 10000 bytes"):
        blobs.put_stream(endless(), max_size=10_000)
    assert consumed == 11
    with pytest.raises(BlobError, match="expected at most 3 bytes"):
        blobs.put(b"four", max_size=3)
    assert blobs.put(b"four", max_size=4) == sha(b"four")
    assert [p.name for p in stored_files(blobs)] == [sha(b"four")[2:]]


def test_failing_source_leaves_no_temp(blobs: BlobStore) -> None:
    def broken() -> Iterator[bytes]:
        yield b"partial"
        raise OSError("connection reset")

    with pytest.raises(BlobError, match="connection reset"):
        blobs.put_stream(broken())
    with pytest.raises(BlobError, match="expected bytes, found str"):
        blobs.put_stream(["text"])  # type: ignore[list-item]
    assert stored_files(blobs) == []


HOSTILE_NAMES: list[object] = [
    "../x",
    "../" + "a" * 61,
    "/" + "a" * 63,
    "aa/" + "b" * 61,
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "a" * 63 + "\n",
    "a" * 63 + "g",
    "",
    "tmp",
    None,
    b"a" * 64,
]
BLOB_CALLS: dict[str, Callable[[BlobStore, object], object]] = {
    "open": lambda b, n: b.open(n),  # type: ignore[arg-type]
    "size": lambda b, n: b.size(n),  # type: ignore[arg-type]
    "exists": lambda b, n: b.exists(n),  # type: ignore[arg-type]
    "verify": lambda b, n: b.verify(n),  # type: ignore[arg-type]
    "path": lambda b, n: b.path(n),  # type: ignore[arg-type]
    "put_expected": lambda b, n: b.put(b"data", n),  # type: ignore[arg-type]
}


HOSTILE_CASES = [
    pytest.param(call, name, id=f"{label}-{name!r}")
    for label, call in BLOB_CALLS.items()
    for name in HOSTILE_NAMES
    if not (label == "put_expected" and name is None)  # None there means "no expectation"
]


@pytest.mark.parametrize(("call", "name"), HOSTILE_CASES)
def test_rejects_hostile_names(
    blobs: BlobStore, call: Callable[[BlobStore, object], object], name: object
) -> None:
    with pytest.raises(BlobError, match="expected 64 lowercase hex digits"):
        call(blobs, name)
    assert stored_files(blobs) == []


def test_missing_blob(blobs: BlobStore) -> None:
    absent = sha(b"never stored")
    assert not blobs.exists(absent)
    with pytest.raises(BlobError, match="expected to be stored, found nothing"):
        blobs.open(absent)
    with pytest.raises(BlobError, match="expected to be stored, found nothing"):
        blobs.size(absent)
    with pytest.raises(BlobError, match="expected to be stored, found nothing"):
        blobs.verify(absent)


def test_put_is_idempotent(blobs: BlobStore) -> None:
    first = blobs.put(b"same bytes")
    before = os.stat(blobs.path(first))
    assert blobs.put(b"same bytes", first) == first
    after = os.stat(blobs.path(first))
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert len(stored_files(blobs)) == 1
    assert tmp_files(blobs) == []


def test_concurrent_puts_of_the_same_blob(blobs: BlobStore) -> None:
    data = os.urandom(2 * 1024 * 1024)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def put() -> None:
        barrier.wait()
        results.append(blobs.put_stream(io.BytesIO(data), sha(data))[0])

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [sha(data)] * 8
    assert stored_files(blobs) == [blobs.path(sha(data))]
    assert blobs.verify(sha(data)) == len(data)


def test_verify_detects_tampering(blobs: BlobStore) -> None:
    digest = blobs.put(b"original result")
    path = blobs.path(digest)
    path.chmod(0o644)  # stored blobs are read-only
    path.write_bytes(b"tampered result")
    with pytest.raises(
        DamagedBlobError, match=f"blob {digest}: stored bytes hash to {sha(b'tampered result')}"
    ):
        blobs.verify(digest)
    with pytest.raises(DamagedBlobError):
        blobs.open_verified(digest)
    assert blobs.put(b"original result") == digest  # putting the right bytes again repairs it
    assert blobs.verify(digest) == len(b"original result")


def test_clean_tmp_removes_leftovers(blobs: BlobStore) -> None:
    (blobs.root / "tmp" / "blob-crashed").write_bytes(b"half an upload")
    assert blobs.clean_tmp() == 1
    assert tmp_files(blobs) == []
