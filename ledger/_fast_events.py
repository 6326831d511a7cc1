"""The fast paths of :mod:`ledger.events`: canonical bytes spliced by hand, and read by pattern.

Each function equals a general one that it only exists to outrun. Change an event or entry
field and the fast function, its general twin and the pinning test change together:

- ``signed_event_bytes`` and ``entry_bytes`` must equal ``canonical_bytes(x.to_dict())`` of the
  ``SignedEvent`` and ``Entry`` they are called for (``SignedEvent.canonical``, ``Entry._seal``).
  Pinned by ``tests/ledger/test_fast_events.py::test_splices_equal_jcs_of_every_kind``.
- ``read_posted`` must equal ``SignedEvent.from_dict(parse_json(data))`` whenever it returns a
  value (``SignedEvent.from_json``). Pinned by
  ``tests/ledger/test_fast_events.py::test_posted_reader_agrees_with_the_general_path``.
- ``read_entry`` must equal ``Entry.parse_canonical`` whenever it returns fields
  (``Entry.from_canonical``). Pinned by
  ``tests/ledger/test_fast_events.py::test_entry_reader_agrees_with_the_general_path`` (random
  edits) and ``::test_entry_reader_refuses_like_the_general_path`` (a table of attacks).

The readers return None for anything they do not handle, including every invalid input, so the
general path decides and names the problem. Justified by ``bench/fast_paths_bench.py`` (each
path against its general twin in the same run): a stored entry is read 1.5x and a posted event
1.2x as fast, an entry's canonical bytes are made 14x and an envelope's 20x as fast. Every
replayed, audited or served entry takes these paths (``bench/ledger_bench.py``, replay).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from ledger.bodies import BODY_TYPES, Body, EventKind
from ledger.canonical import canonical_bytes, parse_plain, parse_plain_text
from ledger.errors import LedgerError


def signed_event_bytes(event_canonical: bytes, sig_b64: str) -> bytes:
    """The canonical envelope: keys sort as "event" < "sig"; base64 needs no escaping."""
    return b'{"event":' + event_canonical + b',"sig":"' + sig_b64.encode() + b'"}'


def entry_bytes(signed_canonical: bytes, index: int, prev: str, received: str) -> bytes:
    """The canonical entry: JCS composes, so with the keys in sorted order ("event" < "index" <
    "prev" < "received") and leaf values that need no escaping (a hex hash, a timestamp, both
    validated), it is the canonical envelope spliced into fixed text."""
    return b"".join(
        (
            b'{"event":',
            signed_canonical,
            b',"index":',
            str(index).encode(),
            b',"prev":"',
            prev.encode(),
            b'","received":"',
            received.encode(),
            b'"}',
        )
    )


class _HasCanonical(Protocol):
    def canonical(self) -> bytes: ...


_T = TypeVar("_T", bound=_HasCanonical)


def read_posted(data: bytes, build: Callable[[Any], _T]) -> _T | None:
    """``build(value)`` (``SignedEvent.from_dict(value, plain=True)``) for a post in canonical
    form, the form clients send; None otherwise.

    The plain parse skips duplicate-key detection and the subset walk; comparing the canonical
    bytes of what was built with ``data`` makes up for both, since no document with a duplicate
    key, a non-canonical escape or extra whitespace can equal them.
    """
    if not data.isascii():
        return None
    try:
        value, plain = parse_plain(data)
        built = build(value) if plain else None
    except LedgerError:
        return None
    return built if built is not None and built.canonical() == data else None


@dataclass(slots=True, kw_only=True)
class EntryFields:
    """What :func:`read_entry` read: the fields of an entry, already validated. (Not frozen: a
    frozen dataclass's ``__init__`` costs a microsecond per entry read, and this value never
    leaves ``Entry.from_canonical``.)"""

    index: int
    prev: str
    received: str
    kind: EventKind
    ledger: str
    author: str
    time: str
    nonce: str
    body: Body
    event_canonical: bytes  # the slice of the entry that is the event's canonical bytes
    sig: bytes


_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z"
# The canonical text of an entry whose envelope strings need no JSON escaping. Every character
# outside the groups is fixed, and each group admits only the canonical encoding of a value its
# field reader accepts (the readers' patterns, restricted to ASCII and to no escapes; a
# signature's last base64 digit carries no stray bits). Only the body is free text, and it is
# checked by parsing, its kind's strict ``from_dict`` and a canonical-form comparison.
_CANONICAL_ENTRY = re.compile(
    r'\{"event":\{"event":\{"author":"([0-9a-f]{64})","body":(\{.*\}),'
    r'"kind":"([a-z_]{1,32})","ledger":"([\x20\x21\x23-\x5b\x5d-\x7e]{0,128})",'
    r'"nonce":"([0-9a-f]{32})","time":"(' + _TIME + r')","v":1\},'
    r'"sig":"([A-Za-z0-9+/]{85}[AQgw]==)"\},"index":(0|[1-9][0-9]{0,15}),'
    r'"prev":"([0-9a-f]{64})","received":"(' + _TIME + r')"\}',
    re.DOTALL,
)
_EVENT_START = len('{"event":{"event":')
_EVENT_TAIL = len('","v":1}')
_KINDS = {kind.value: kind for kind in EventKind}
_MAX_INDEX = 2**53 - 1


def read_entry(data: bytes) -> EntryFields | None:
    """The fields of stored entry bytes in the usual, escape-free form; None for anything else.

    ``data`` is then exactly the canonical text of the fields returned, each validated by the
    rules the general path applies, so the entry built from them may take ``data`` as its
    canonical bytes without encoding it again.
    """
    if not data.isascii():
        return None
    text = data.decode("ascii")
    match = _CANONICAL_ENTRY.fullmatch(text)
    if match is None:
        return None
    author, body_text, kind_text, ledger, nonce, time, sig, index_text, prev, received = (
        match.groups()
    )
    kind = _KINDS.get(kind_text)
    index = int(index_text)
    if kind is None or index > _MAX_INDEX:
        return None
    try:
        datetime.fromisoformat(time)
        datetime.fromisoformat(received)
        value, plain = parse_plain_text(body_text)
        if not plain or canonical_bytes(value, known_plain=True) != body_text.encode("ascii"):
            return None
        body = BODY_TYPES[kind].from_dict(value, f"{kind.value}.body")
    except (LedgerError, ValueError):
        return None
    return EntryFields(
        index=index,
        prev=prev,
        received=received,
        kind=kind,
        ledger=ledger,
        author=author,
        time=time,
        nonce=nonce,
        body=body,
        event_canonical=data[_EVENT_START : match.end(6) + _EVENT_TAIL],
        sig=base64.b64decode(sig),
    )
