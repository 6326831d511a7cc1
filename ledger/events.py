"""Events, signed events and ledger entries (DESIGN 3).

- ``Event`` is the unsigned statement; ``SignedEvent`` the envelope an author posts; ``Entry`` what
  the registry appends (the Merkle leaf and a link of the git-like prev-hash chain).
- ``event_id`` = hex SHA-256 of JCS(event); entry hash = SHA-256(JCS(entry));
  Merkle leaf hash = SHA-256(0x00 || JCS(entry)).
- Canonical bytes are computed from the parsed JSON object (never from a re-serialized guess) and,
  for stored entries, compared with the bytes on disk: a stored record that is not exactly the
  canonical form of what it parses to (duplicate keys, other spacing, reordered keys) is refused.
- The hot paths (canonical envelope and entry bytes spliced by hand, canonical posts and stored
  entries read by a fast parser) are fenced in :mod:`ledger._fast_events`, whose header names the
  general function here that each must equal and the test that holds them equal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NewType

from crypto import KeyId, Purpose, SigningKey, domain_bytes
from ledger import fields as f
from ledger._fast_events import entry_bytes, read_entry, read_posted, signed_event_bytes
from ledger.bodies import BODY_TYPES, Body, EventId, EventKind
from ledger.canonical import canonical_bytes, parse_json, parse_plain
from ledger.errors import EncodingError, FormatError

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

        A post in canonical form, as clients send, takes the fast path
        (:func:`ledger._fast_events.read_posted`); anything else, including every invalid
        document, takes the strict general path, which also gives the error message.
        """
        if isinstance(data, bytes):
            signed = read_posted(data, lambda value: cls.from_dict(value, plain=True))
            if signed is not None:
                return signed
        return cls.from_dict(parse_json(data, what="signed event"))

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event.to_dict(), "sig": self.sig_b64}

    @property
    def sig_b64(self) -> str:
        return base64.b64encode(self.sig).decode("ascii")

    def canonical(self) -> bytes:
        """``canonical_bytes(self.to_dict())``, spliced (:mod:`ledger._fast_events`)."""
        return signed_event_bytes(self.event.canonical, self.sig_b64)


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
        return cls._assemble(index=index, prev=prev, received=received, event=event)

    @classmethod
    def _assemble(
        cls,
        *,
        index: int,
        prev: EntryHash,
        received: str,
        event: SignedEvent,
        canonical: bytes | None = None,
    ) -> Entry:
        """The one way round the constructor's checks, for callers holding the fields checked:
        :meth:`following`, and the fast reader, which passes the ``canonical`` bytes it read.
        ``tests/ledger/test_fast_events.py`` holds both to what the constructor builds."""
        entry: Entry = object.__new__(cls)
        put = object.__setattr__
        put(entry, "index", index)
        put(entry, "prev", prev)
        put(entry, "received", received)
        put(entry, "event", event)
        entry._seal(canonical)
        return entry

    def _seal(self, canonical: bytes | None = None) -> None:
        # canonical_bytes(self.to_dict()), spliced (ledger._fast_events.entry_bytes).
        if canonical is None:
            canonical = entry_bytes(self.event.canonical(), self.index, self.prev, self.received)
        object.__setattr__(self, "canonical", canonical)
        object.__setattr__(self, "hash", EntryHash(hashlib.sha256(canonical).hexdigest()))

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
        """Parse stored entry bytes, refusing any that are not exactly canonical.

        The usual, escape-free entry takes the fast path (:func:`ledger._fast_events.read_entry`);
        anything else, including every invalid record, takes :meth:`parse_canonical`.
        """
        fields = read_entry(data)
        if fields is None:
            return cls.parse_canonical(data)
        event = Event(
            kind=fields.kind,
            ledger=fields.ledger,
            author=KeyId(fields.author),
            time=fields.time,
            nonce=fields.nonce,
            body=fields.body,
            canonical=fields.event_canonical,
        )
        return cls._assemble(
            index=fields.index,
            prev=EntryHash(fields.prev),
            received=fields.received,
            event=SignedEvent(event=event, sig=fields.sig),
            canonical=data,
        )

    @classmethod
    def parse_canonical(cls, data: bytes) -> Entry:
        """:meth:`from_canonical`'s general path: parse, build, and compare the canonical form.

        Raises :class:`EncodingError` for bytes that are not JSON or not in canonical form, and
        :class:`FormatError` for an entry that breaks a field rule.
        """
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
