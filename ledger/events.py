"""Events, signed events and ledger entries (DESIGN 3).

- ``Event`` is the unsigned statement; ``SignedEvent`` the envelope an author posts; ``Entry`` what
  the registry appends (the Merkle leaf and a link of the git-like prev-hash chain).
- ``event_id`` = hex SHA-256 of JCS(event); entry hash = SHA-256(JCS(entry));
  Merkle leaf hash = SHA-256(0x00 || JCS(entry)).
- Canonical bytes are computed from the parsed JSON object (never from a re-serialized guess) and,
  for stored entries, compared with the bytes on disk: a stored record that is not exactly the
  canonical form of what it parses to (duplicate keys, other spacing, reordered keys) is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NewType

from crypto import KeyId, Purpose, SigningKey, domain_bytes
from ledger import fields as f
from ledger.bodies import BODY_TYPES, Body, EventId, EventKind
from ledger.canonical import canonical_bytes, parse_json, parse_plain, parse_plain_text
from ledger.errors import EncodingError, FormatError, LedgerError

EntryHash = NewType("EntryHash", str)

VERSION = 1
ZERO_HASH = EntryHash("0" * 64)
SIG_B64_LEN = 88  # base64 of 64 bytes


def utc_now() -> str:
    """The current UTC time as the ledger writes it (microseconds, 'Z')."""
    return format_time(datetime.now(UTC))


def format_time(moment: datetime) -> str:
    # The same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), several times faster.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """The unsigned statement. ``canonical`` is filled from the parsed JSON by ``from_dict``;
    leave it empty when constructing an event in code."""

    v: int = VERSION
    kind: EventKind
    ledger: str
    author: KeyId
    time: str
    nonce: str
    body: Body
    canonical: bytes = field(default=b"", repr=False, compare=False)
    id: EventId = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.v != VERSION:
            raise FormatError(f"event.v: expected {VERSION}, found {self.v}")
        if type(self.body) is not BODY_TYPES[self.kind]:
            raise FormatError(
                f"event.body: a {self.kind} event cannot carry {type(self.body).__name__}"
            )
        if not self.canonical:
            object.__setattr__(self, "canonical", canonical_bytes(self.to_dict()))
        object.__setattr__(self, "id", EventId(hashlib.sha256(self.canonical).hexdigest()))

    @classmethod
    def from_dict(cls, value: object, where: str = "event", *, plain: bool = False) -> Event:
        d = f.obj(value, where, ("v", "kind", "ledger", "author", "time", "nonce", "body"))
        kind_text = f.string(d["kind"], f"{where}.kind", max_len=32)
        try:
            kind = EventKind(kind_text)
        except ValueError:
            allowed = ", ".join(k.value for k in EventKind)
            raise FormatError(
                f"{where}.kind: expected one of {allowed}, found {kind_text!r}"
            ) from None
        return cls(
            v=f.integer(d["v"], f"{where}.v", low=VERSION, high=VERSION),
            kind=kind,
            ledger=f.string(d["ledger"], f"{where}.ledger", max_len=128),
            author=KeyId(f.hex64(d["author"], f"{where}.author")),
            time=f.timestamp(d["time"], f"{where}.time"),
            nonce=f.string(
                d["nonce"],
                f"{where}.nonce",
                pattern=f.HEX32,
                max_len=32,
                what="32 lowercase hex digits",
            ),
            body=BODY_TYPES[kind].from_dict(d["body"], f"{kind.value}.body"),
            canonical=canonical_bytes(value, known_plain=plain),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "kind": self.kind.value,
            "ledger": self.ledger,
            "author": self.author,
            "time": self.time,
            "nonce": self.nonce,
            "body": self.body.to_dict(),
        }

    def signing_bytes(self) -> bytes:
        return domain_bytes(Purpose.EVENT, self.canonical)


def new_event(
    body: Body,
    *,
    ledger: str,
    author: KeyId,
    clock: Callable[[], str] = utc_now,
    nonce: Callable[[], str] = lambda: secrets.token_hex(16),
) -> Event:
    """An event for ``body``; time and nonce are injectable for deterministic tests."""
    return Event(
        kind=body.KIND, ledger=ledger, author=author, time=clock(), nonce=nonce(), body=body
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedEvent:
    event: Event
    sig: bytes

    def __post_init__(self) -> None:
        if len(self.sig) != 64:
            raise FormatError(f"sig: expected 64 signature bytes, found {len(self.sig)}")

    @classmethod
    def sign(cls, event: Event, key: SigningKey) -> SignedEvent:
        if key.key_id != event.author:
            raise FormatError(
                f"event.author is {event.author[:16]} but the signing key is {key.key_id[:16]}"
            )
        return cls(event=event, sig=key.sign(event.signing_bytes()))

    @classmethod
    def from_dict(
        cls, value: object, where: str = "signed event", *, plain: bool = False
    ) -> SignedEvent:
        d = f.obj(value, where, ("event", "sig"))
        return cls(event=Event.from_dict(d["event"], plain=plain), sig=_sig(d["sig"], "sig"))

    @classmethod
    def from_json(cls, data: bytes | str) -> SignedEvent:
        """Strictly parse a posted signed event (duplicate keys, NaN, unknown fields refused).

        Clients post canonical bytes, so that case goes first: the fast plain parse, then a
        comparison with the canonical form, which no document with a duplicate key, a
        non-canonical escape or extra whitespace can pass. Anything else, including every
        invalid document, takes the strict general path, which also gives the error message.
        """
        if isinstance(data, bytes) and data.isascii():
            try:
                value, plain = parse_plain(data)
                if plain:
                    signed = cls.from_dict(value, plain=True)
                    if signed.canonical() == data:
                        return signed
            except LedgerError:
                pass
        return cls.from_dict(parse_json(data, what="signed event"))

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event.to_dict(), "sig": self.sig_b64}

    @property
    def sig_b64(self) -> str:
        return base64.b64encode(self.sig).decode("ascii")

    def canonical(self) -> bytes:
        # Keys sort as "event" < "sig"; the sig is base64 and needs no escaping.
        return b'{"event":' + self.event.canonical + b',"sig":"' + self.sig_b64.encode() + b'"}'


def _sig(value: object, where: str) -> bytes:
    text = f.string(value, where, pattern=f.B64, max_len=SIG_B64_LEN, what="base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{where}: not valid base64") from exc
    if len(raw) != 64 or len(text) != SIG_B64_LEN:
        raise FormatError(f"{where}: expected a 64-byte Ed25519 signature, found {len(raw)} bytes")
    return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """A ledger entry. ``canonical`` is JCS(entry); ``hash`` its hex SHA-256."""

    index: int
    prev: EntryHash
    received: str
    event: SignedEvent
    canonical: bytes = field(init=False, repr=False, compare=False)
    hash: EntryHash = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        f.integer(self.index, "entry.index")
        f.hex64(self.prev, "entry.prev")
        f.timestamp(self.received, "entry.received")
        self._seal()

    @classmethod
    def following(cls, *, index: int, prev: EntryHash, received: str, event: SignedEvent) -> Entry:
        """The entry the appender builds: the same value as the constructor gives, without
        re-checking fields it already holds checked (``index`` is the state's size, ``prev``
        its head hash, ``received`` a timestamp it validated once for the whole batch)."""
        entry: Entry = object.__new__(cls)
        put = object.__setattr__
        put(entry, "index", index)
        put(entry, "prev", prev)
        put(entry, "received", received)
        put(entry, "event", event)
        entry._seal()
        return entry

    def _seal(self) -> None:
        # JCS composes: with the keys in their sorted order ("event" < "index" < "prev" <
        # "received") and every leaf value needing no escaping (validated above), the entry's
        # canonical bytes are the canonical event envelope spliced into fixed text. A test
        # checks this against canonical_bytes(to_dict()) for every kind.
        data = (
            b'{"event":'
            + self.event.canonical()
            + b',"index":'
            + str(self.index).encode()
            + b',"prev":"'
            + self.prev.encode()
            + b'","received":"'
            + self.received.encode()
            + b'"}'
        )
        object.__setattr__(self, "canonical", data)
        object.__setattr__(self, "hash", EntryHash(hashlib.sha256(data).hexdigest()))

    @classmethod
    def from_dict(cls, value: object, where: str = "entry", *, plain: bool = False) -> Entry:
        d = f.obj(value, where, ("index", "prev", "received", "event"))
        return cls(
            index=f.integer(d["index"], f"{where}.index"),
            prev=EntryHash(f.hex64(d["prev"], f"{where}.prev")),
            received=f.timestamp(d["received"], f"{where}.received"),
            event=SignedEvent.from_dict(d["event"], f"{where}.event", plain=plain),
        )

    @classmethod
    def from_canonical(cls, data: bytes) -> Entry:
        """Parse stored entry bytes, refusing any that are not exactly canonical."""
        entry = _read_canonical(data)
        if entry is not None:
            return entry
        try:
            value, plain = parse_plain(data)
        except EncodingError as exc:
            raise EncodingError(f"stored entry: {exc}") from exc
        entry = cls.from_dict(value, plain=plain)
        if entry.canonical != data:
            raise EncodingError(f"entry {entry.index}: stored bytes are not in canonical form")
        return entry

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prev": self.prev,
            "received": self.received,
            "event": self.event.to_dict(),
        }

    @property
    def leaf_hash(self) -> bytes:
        return hashlib.sha256(b"\x00" + self.canonical).digest()


_TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z"
# The canonical text of an entry whose envelope strings need no JSON escaping. Every character
# outside the groups is fixed, and each group admits only the canonical encoding of a value its
# field reader accepts (the readers' patterns, restricted to ASCII and to no escapes; a
# signature's last base64 digit carries no stray bits). Only the body is free text, and it is
# checked by parsing, its kind's strict ``from_dict`` and a canonical-form comparison.
_CANONICAL_ENTRY = re.compile(
    r'\{"event":\{"event":\{"author":"([0-9a-f]{64})","body":(\{.*\}),'
    r'"kind":"([a-z]{1,32})","ledger":"([\x20\x21\x23-\x5b\x5d-\x7e]{0,128})",'
    r'"nonce":"([0-9a-f]{32})","time":"(' + _TIME + r')","v":1\},'
    r'"sig":"([A-Za-z0-9+/]{85}[AQgw]==)"\},"index":(0|[1-9][0-9]{0,15}),'
    r'"prev":"([0-9a-f]{64})","received":"(' + _TIME + r')"\}',
    re.DOTALL,
)
_EVENT_START = len('{"event":{"event":')
_EVENT_TAIL = len('","v":1}')
_KINDS = {kind.value: kind for kind in EventKind}
_MAX_INDEX = 2**53 - 1


def _read_canonical(data: bytes) -> Entry | None:
    """The fast path of :meth:`Entry.from_canonical` for the usual, escape-free entry.

    It accepts exactly what the general path accepts for such bytes and builds the same value
    (``data`` is the canonical text of the fields read here, validated by the same rules). It
    returns None for anything else, including every invalid record, so that the general path
    reports the problem with its usual message.
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
    event = Event(
        kind=kind,
        ledger=ledger,
        author=KeyId(author),
        time=time,
        nonce=nonce,
        body=body,
        canonical=data[_EVENT_START : match.end(6) + _EVENT_TAIL],
    )
    signed = SignedEvent(event=event, sig=base64.b64decode(sig))
    entry: Entry = object.__new__(Entry)
    put = object.__setattr__
    put(entry, "index", index)
    put(entry, "prev", EntryHash(prev))
    put(entry, "received", received)
    put(entry, "event", signed)
    put(entry, "canonical", data)
    put(entry, "hash", EntryHash(hashlib.sha256(data).hexdigest()))
    return entry
