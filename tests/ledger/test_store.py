"""The entry store on real files: round trips, recovery of torn tails and damaged indexes, and
refusal to silently drop damage inside the log."""

from __future__ import annotations

import logging
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.errors import CorruptStoreError, StoreError
from ledger.store.durable import write_atomic
from ledger.store.entries import EntryStore
from ledger.store.logfiles import INDEX_NAME, LOG_NAME
from ledger.store.records import HEADER_SIZE, MAX_PAYLOAD

REPO = Path(__file__).resolve().parents[2]


def payload(n: int) -> bytes:
    # Varying lengths, so offsets are not a multiple of one record size.
    return b'{"n":%d,"pad":"%s"}' % (n, b"x" * (n % 13))


def make_store(data_dir: Path, count: int, batch: int = 3) -> list[bytes]:
    items = [payload(n) for n in range(count)]
    with EntryStore.open(data_dir) as store:
        for first in range(0, count, batch):
            store.append_batch(items[first : first + batch])
    return items


def record_offsets(items: list[bytes]) -> list[int]:
    offsets, position = [], 0
    for item in items:
        offsets.append(position)
        position += HEADER_SIZE + len(item)
    return offsets


def index_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<Q", offset) for offset in record_offsets(items))


def read_all(store: EntryStore) -> list[bytes]:
    return [store.read(i) for i in range(store.count)]


def assert_store_holds(data_dir: Path, items: list[bytes]) -> None:
    with EntryStore.open(data_dir) as store:
        assert store.count == len(items)
        assert read_all(store) == items
        assert store.verify_records() == len(items)
    log_size = sum(HEADER_SIZE + len(item) for item in items)
    assert (data_dir / LOG_NAME).stat().st_size == log_size
    assert (data_dir / INDEX_NAME).read_bytes() == index_bytes(items)


# -- round trips ---------------------------------------------------------------------------


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    items = [payload(n) for n in range(50)]
    with EntryStore.open(tmp_path) as store:
        assert store.count == 0
        store.append_batch(items[:1])
        store.append_batch(items[1:20])
        store.append_batch([])
        store.append_batch(items[20:])
        assert store.count == 50
        assert read_all(store) == items
    assert_store_holds(tmp_path, items)


def test_read_range_and_iter_from(tmp_path: Path) -> None:
    items = make_store(tmp_path, 40, batch=7)
    with EntryStore.open(tmp_path) as store:
        assert store.read_range(0, 40) == items
        assert store.read_range(5, 17) == items[5:17]
        assert store.read_range(39, 40) == items[39:]
        assert store.read_range(12, 12) == []
        assert list(store.iter_from(3, batch=5)) == items[3:]
        assert list(store.iter_from(3, 11, batch=4)) == items[3:11]
        assert list(store.iter_from(40)) == []


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda s: s.read(-1), "entry -1: out of range"),
        (lambda s: s.read(5), "entry 5: out of range, the store holds 5"),
        (lambda s: s.read_range(3, 2), "expected 0 <= start <= stop <= 5"),
        (lambda s: s.read_range(0, 6), "expected 0 <= start <= stop <= 5"),
        (lambda s: s.iter_from(6), "expected 0 <= start <= stop <= 5"),
        (lambda s: s.iter_from(0, batch=0), "batch: expected >= 1"),
        (lambda s: s.truncate(6), "truncate: expected 0..5, found 6"),
        (lambda s: s.append_batch([b""]), "expected at least 1 byte"),
        (lambda s: s.append_batch([b"x" * (MAX_PAYLOAD + 1)]), "expected at most"),
    ],
)
def test_rejects_out_of_range_and_bad_payloads(
    tmp_path: Path, call: Callable[[EntryStore], object], expected: str
) -> None:
    items = make_store(tmp_path, 5)
    with EntryStore.open(tmp_path) as store:
        with pytest.raises(StoreError, match=expected):
            call(store)
        assert read_all(store) == items


def test_closed_store_refuses_and_close_is_idempotent(tmp_path: Path) -> None:
    make_store(tmp_path, 3)
    store = EntryStore.open(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.read(0)
    with pytest.raises(StoreError, match="closed"):
        store.append_batch([b"{}"])


def test_truncate_drops_the_tail_durably(tmp_path: Path) -> None:
    items = make_store(tmp_path, 10)
    with EntryStore.open(tmp_path) as store:
        store.truncate(6)
        assert store.count == 6
        store.append_batch([b'{"after":1}'])
    assert_store_holds(tmp_path, [*items[:6], b'{"after":1}'])


# -- the lock ------------------------------------------------------------------------------


def test_second_open_in_process_is_refused(tmp_path: Path) -> None:
    with EntryStore.open(tmp_path), pytest.raises(StoreError, match="already open"):
        EntryStore.open(tmp_path)
    with EntryStore.open(tmp_path) as store:  # released by close
        assert store.count == 0


def test_open_by_another_process_is_refused(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from ledger.store.entries import EntryStore\n"
        "from ledger.errors import StoreError\n"
        "try:\n    EntryStore.open(Path(sys.argv[1]))\n"
        "except StoreError as exc:\n    print(exc); sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with EntryStore.open(tmp_path):
        held = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, env=env, check=False
        )
    assert held.returncode == 3, held.stderr
    assert b"already open" in held.stdout
    free = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, env=env, check=False
    )
    assert free.returncode == 0, free.stderr


# -- a damaged or stale index is re-derived ------------------------------------------------

IndexDamage = Callable[[bytes], bytes | None]  # new index bytes, or None to delete the file

INDEX_DAMAGE: dict[str, IndexDamage] = {
    "deleted": lambda idx: None,
    "emptied": lambda idx: b"",
    "shorter_by_three_items": lambda idx: idx[:-24],
    "partial_trailing_item": lambda idx: idx[:-3],
    "longer_past_the_log": lambda idx: idx + struct.pack("<QQ", 10**6, 10**6 + 40),
    "longer_repeating_items": lambda idx: idx + idx[-16:],
    "last_item_zeroed": lambda idx: idx[:-8] + bytes(8),
    "tail_zeroed_like_lost_pages": lambda idx: idx + bytes(4096),
    "random_garbage": lambda idx: random.Random(7).randbytes(len(idx)),
    "offsets_shifted_by_one": lambda idx: b"".join(
        struct.pack("<Q", struct.unpack_from("<Q", idx, i)[0] + 1) for i in range(0, len(idx), 8)
    ),
}


@pytest.mark.parametrize("damage", INDEX_DAMAGE.values(), ids=INDEX_DAMAGE.keys())
def test_index_is_rebuilt_when(tmp_path: Path, damage: IndexDamage) -> None:
    items = make_store(tmp_path, 30)
    index_path = tmp_path / INDEX_NAME
    damaged = damage(index_path.read_bytes())
    if damaged is None:
        index_path.unlink()
    else:
        index_path.write_bytes(damaged)
    assert_store_holds(tmp_path, items)


def test_index_lagging_the_log_is_extended_not_lost(tmp_path: Path) -> None:
    # A crash after the log fsync but before the index write: the records are durable and kept.
    items = make_store(tmp_path, 12)
    index_path = tmp_path / INDEX_NAME
    index_path.write_bytes(index_path.read_bytes()[: 8 * 9])
    assert_store_holds(tmp_path, items)


def test_mid_index_damage_is_found_by_verify_and_fixed_by_rebuild(tmp_path: Path) -> None:
    items = make_store(tmp_path, 20)
    index_path = tmp_path / INDEX_NAME
    idx = bytearray(index_path.read_bytes())
    offset = struct.unpack_from("<Q", idx, 8 * 7)[0]
    idx[8 * 7 : 8 * 8] = struct.pack("<Q", offset + 1)  # still increasing, so open keeps it
    index_path.write_bytes(bytes(idx))
    with EntryStore.open(tmp_path) as store:  # open trusts the index up to its validated end
        with pytest.raises(CorruptStoreError, match="entry 7: expected offset"):
            store.verify_records()
        assert store.rebuild_index() == 20
        assert store.verify_records() == 20
        assert read_all(store) == items
    assert_store_holds(tmp_path, items)


# -- torn and garbage tails are cut --------------------------------------------------------


@pytest.mark.parametrize("index_state", ["current", "deleted"])
def test_torn_last_record_is_cut_at_every_offset(
    tmp_path: Path, index_state: str, caplog: pytest.LogCaptureFixture
) -> None:
    template = tmp_path / "template"
    items = make_store(template, 6, batch=2)
    last_start = record_offsets(items)[-1]
    log_size = (template / LOG_NAME).stat().st_size
    for cut in range(last_start, log_size):
        data_dir = tmp_path / f"cut-{cut}"
        shutil.copytree(template, data_dir)
        os.truncate(data_dir / LOG_NAME, cut)
        if index_state == "deleted":
            (data_dir / INDEX_NAME).unlink()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ledger.store.logscan"):
            assert_store_holds(data_dir, items[:-1])
        torn = cut - last_start
        if torn:
            assert f"cut {torn} bytes of torn tail at entry 5" in caplog.text
        # Appends continue where the intact log ends.
        with EntryStore.open(data_dir) as store:
            store.append_batch([b'{"next":1}'])
        assert_store_holds(data_dir, [*items[:-1], b'{"next":1}'])
        shutil.rmtree(data_dir)


GARBAGE: dict[str, bytes] = {
    "one_byte": b"\x00",
    "zeros_like_lost_pages": bytes(4096),
    "random_short": random.Random(1).randbytes(11),
    "random_long": random.Random(2).randbytes(100_000),
    "magic_then_bad_crc": b"PHTE" + struct.pack("<II", 5, 0) + b"hello",
    "magic_then_huge_length": b"PHTE" + struct.pack("<II", 0xFFFFFFFF, 0),
    "magic_then_zero_length": b"PHTE" + struct.pack("<II", 0, 0),
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_tail_is_cut(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    items = make_store(tmp_path, 8)
    with (tmp_path / LOG_NAME).open("ab") as log:
        log.write(garbage)
    with caplog.at_level(logging.WARNING, logger="ledger.store.logscan"):
        assert_store_holds(tmp_path, items)
    assert f"cut {len(garbage)} bytes of torn tail at entry 8" in caplog.text


# -- damage inside the log is reported, never silently cut ---------------------------------


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", [0, 2, 4, 8, HEADER_SIZE + 3], ids=str)
def test_flipped_byte_mid_log_is_reported_by_verify_records(tmp_path: Path, where: int) -> None:
    items = make_store(tmp_path, 10)
    flip_byte(tmp_path / LOG_NAME, record_offsets(items)[4] + where)
    with EntryStore.open(tmp_path) as store:  # only the tail is checked at open
        assert store.count == 10
        assert store.read(3) == items[3]
        assert store.read(5) == items[5]
        with pytest.raises(CorruptStoreError, match="entry 4"):
            store.read(4)
        with pytest.raises(CorruptStoreError, match="entry 4"):
            store.read_range(2, 7)
        with pytest.raises(CorruptStoreError, match="entry 4"):
            store.verify_records()
        with pytest.raises(CorruptStoreError, match="entry 4"):
            store.rebuild_index()
        assert store.count == 10  # a failed rebuild changes nothing


def test_open_refuses_to_cut_mid_log_damage_when_it_must_scan(tmp_path: Path) -> None:
    items = make_store(tmp_path, 10)
    log_path = tmp_path / LOG_NAME
    flip_byte(log_path, record_offsets(items)[4] + HEADER_SIZE + 1)
    (tmp_path / INDEX_NAME).unlink()
    size = log_path.stat().st_size
    with pytest.raises(CorruptStoreError, match=r"entry 4 at offset \d+: bad crc.*not a torn tail"):
        EntryStore.open(tmp_path)
    assert log_path.stat().st_size == size  # nothing was cut
    with EntryStore.open(tmp_path, cut_corrupt_tail=True) as store:  # the operator's override
        assert read_all(store) == items[:4]


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_appenders_and_readers(tmp_path: Path) -> None:
    batches = [[b'{"t":%d,"i":%d,"k":%d}' % (t, i, k) for k in range(5)] for t in range(4)
               for i in range(25)]  # fmt: skip
    errors: list[BaseException] = []
    with EntryStore.open(tmp_path) as store:

        def append(mine: list[list[bytes]]) -> None:
            for batch in mine:
                store.append_batch(batch)

        def read() -> None:
            try:
                while store.count < 500:
                    count = store.count
                    assert len(store.read_range(0, count)) == count
            except BaseException as exc:
                errors.append(exc)
                raise

        threads = [threading.Thread(target=append, args=(batches[t::4],)) for t in range(4)]
        threads += [threading.Thread(target=read) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        stored = read_all(store)
    assert sorted(stored) == sorted(item for batch in batches for item in batch)
    for first in range(0, 500, 5):  # every batch landed contiguously
        assert stored[first : first + 5] in batches


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]
    with pytest.raises(StoreError, match="cannot write atomically"):
        write_atomic(tmp_path / "missing-dir" / "x", b"")
