"""The record format of ``entries.log`` and ``entries.idx`` (pure: bytes in, values out).

A log record frames one payload (an entry's canonical bytes)::

    offset  size  field
    0       4     magic  b"PHTE"
    4       4     length of the payload in bytes, uint32 little-endian, 1..MAX_PAYLOAD
    8       4     CRC-32 (zlib.crc32, IEEE polynomial) of the payload, uint32 little-endian
    12      n     payload

Records follow each other with no padding; the log is nothing but records. The index file is
one uint64 little-endian per entry: the byte offset of that entry's record in the log. Entry ``i``
is the ``i``-th record; the index is derived data and can always be rebuilt by a scan.

A torn tail (a crash during a write) shows up as a short header, a short payload, a bad magic or
a CRC mismatch at the end of the log. The same defects followed by a valid record are not a torn
tail but damage in the middle of the log.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAGIC = b"PHTE"
HEADER = struct.Struct("<4sII")
HEADER_SIZE = HEADER.size  # 12
MAX_PAYLOAD = 64 * 1024 * 1024
INDEX_ITEM = 8
_INDEX_CODE = "Q"

assert HEADER_SIZE == 12
assert array(_INDEX_CODE).itemsize == INDEX_ITEM


def encode_record(payload: bytes) -> bytes:
    """Frame one payload. Raises ValueError for an empty or oversized payload."""
    if not payload:
        raise ValueError("record payload: expected at least 1 byte, found 0")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(
            f"record payload: expected at most {MAX_PAYLOAD} bytes, found {len(payload)}"
        )
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def header_problem(buf: bytes | memoryview, pos: int) -> tuple[int, str | None]:
    """Parse the header at ``buf[pos:]``: (payload length, None) or (0, what is wrong)."""
    if len(buf) - pos < HEADER_SIZE:
        return 0, f"short header ({len(buf) - pos} of {HEADER_SIZE} bytes)"
    magic, length, _crc = HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        return 0, f"bad magic: expected {MAGIC!r}, found {bytes(magic)!r}"
    if not 0 < length <= MAX_PAYLOAD:
        return 0, f"bad length: expected 1..{MAX_PAYLOAD}, found {length}"
    return length, None


def record_problem(buf: bytes | memoryview, pos: int) -> str | None:
    """What is wrong with the record at ``buf[pos:]`` (None when it is whole and its CRC holds).

    ``buf`` must extend to the end of the log, so a short payload means a truncated record.
    """
    length, problem = header_problem(buf, pos)
    if problem is not None:
        return problem
    start = pos + HEADER_SIZE
    if len(buf) - start < length:
        return f"short payload ({len(buf) - start} of {length} bytes)"
    _magic, _length, crc = HEADER.unpack_from(buf, pos)
    found = zlib.crc32(memoryview(buf)[start : start + length])
    if found != crc:
        return f"bad crc: expected {crc:08x}, found {found:08x}"
    return None


class RecordError(ValueError):
    """The record of entry ``index`` is damaged (``problem`` says how)."""

    def __init__(self, index: int, problem: str) -> None:
        super().__init__(f"entry {index}: {problem}")
        self.index = index
        self.problem = problem


def decode_span(buf: bytes, offsets: Sequence[int], first_index: int) -> list[bytes]:
    """Split ``buf`` into payloads. ``buf`` holds exactly the consecutive records that start at
    ``offsets`` (relative to ``buf``). Raises RecordError naming the entry index of the first
    record that is damaged or does not end where the next one starts.
    """
    payloads: list[bytes] = []
    view = memoryview(buf)
    for n, pos in enumerate(offsets):
        stop = offsets[n + 1] if n + 1 < len(offsets) else len(buf)
        problem = record_problem(view[:stop], pos)
        if problem is None and pos + HEADER_SIZE + HEADER.unpack_from(buf, pos)[1] != stop:
            problem = f"record does not end at the next indexed offset {stop}"
        if problem is not None:
            raise RecordError(first_index + n, problem)
        payloads.append(bytes(view[pos + HEADER_SIZE : stop]))
    return payloads


def decode_framed(buf: bytes, offsets: Sequence[int], first_index: int) -> list[bytes]:
    """:func:`decode_span` without the CRC, for a reader that checks every payload against a
    stronger hash of its own (the ledger compares each entry it serves with its Merkle leaf hash:
    the checksum would only repeat that work). The framing (magic, length, each record ending
    where the next begins) is still checked; a record that fails it raises RecordError as
    :func:`decode_span` would."""
    payloads: list[bytes] = []
    unpack = HEADER.unpack_from
    end = len(buf)
    last = len(offsets) - 1
    for n, pos in enumerate(offsets):
        stop = offsets[n + 1] if n < last else end
        start = pos + HEADER_SIZE
        if stop - pos < HEADER_SIZE:
            return decode_span(buf, offsets, first_index)  # raises, naming the entry
        magic, length, _crc = unpack(buf, pos)
        if magic != MAGIC or start + length != stop or length == 0:
            return decode_span(buf, offsets, first_index)  # raises, naming the entry
        payloads.append(buf[start:stop])
    return payloads


def new_index() -> array[int]:
    return array(_INDEX_CODE)


def index_from_bytes(data: bytes) -> array[int]:
    """Decode whole index items (a trailing partial item is ignored)."""
    items = new_index()
    items.frombytes(data[: len(data) - len(data) % INDEX_ITEM])
    if _big_endian():
        items.byteswap()
    return items


def index_to_bytes(items: array[int]) -> bytes:
    if _big_endian():
        swapped = array(_INDEX_CODE, items)
        swapped.byteswap()
        return swapped.tobytes()
    return items.tobytes()


def _big_endian() -> bool:
    return struct.pack("=H", 1) == b"\x00\x01"


Reader = Callable[[int, int], bytes]
"""``read(offset, size)``: up to ``size`` bytes of the log at ``offset`` (fewer only at its end)."""

SCAN_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    """What a forward scan found: the offsets of whole valid records, where the valid part ends,
    and what stopped the scan there (None when it reached the end of the log cleanly)."""

    offsets: array[int]
    end: int
    problem: str | None


def scan(read: Reader, start: int, size: int, chunk: int = SCAN_CHUNK) -> Scan:
    """Walk the records from ``start`` to ``size`` (the log's length), checking every one."""
    offsets = new_index()
    pos = start
    buf = b""
    buf_start = start
    while pos < size:
        rel = pos - buf_start
        length, problem = header_problem(buf, rel)
        if problem is not None and len(buf) - rel < HEADER_SIZE:
            buf, buf_start, rel = read(pos, min(chunk, size - pos)), pos, 0
            length, problem = header_problem(buf, rel)
        if problem is None and len(buf) - rel - HEADER_SIZE < length:
            want = max(chunk, HEADER_SIZE + length)
            buf, buf_start, rel = read(pos, min(want, size - pos)), pos, 0
        if problem is None:
            problem = record_problem(buf, rel)
        if problem is not None:
            return Scan(offsets=offsets, end=pos, problem=f"offset {pos}: {problem}")
        offsets.append(pos)
        pos += HEADER_SIZE + length
    return Scan(offsets=offsets, end=pos, problem=None)


def find_valid_record(read: Reader, start: int, size: int, chunk: int = SCAN_CHUNK) -> int | None:
    """The offset of the first whole valid record that starts in ``[start, size)``, if any."""
    pos = start
    while pos < size:
        buf = read(pos, min(chunk, size - pos))
        hit = buf.find(MAGIC)
        while hit != -1:
            length, problem = header_problem(read(pos + hit, HEADER_SIZE), 0)
            if problem is None and record_problem(read(pos + hit, HEADER_SIZE + length), 0) is None:
                return pos + hit
            hit = buf.find(MAGIC, hit + 1)
        # Overlap by len(MAGIC) - 1 so a magic split across chunks is still found.
        pos += max(len(buf) - (len(MAGIC) - 1), 1)
    return None
