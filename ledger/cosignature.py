"""Witness cosignatures: C2SP ``tlog-cosignature`` lines (``cosignature/v1``) over checkpoints.

A cosignature is a signed-note signature line (https://c2sp.org/tlog-cosignature)::

    — <key name> base64(key hash (4) || timestamp (8, big-endian uint64 seconds) || Ed25519 (64))

The Ed25519 signature covers ``"cosignature/v1\\ntime <timestamp>\\n" + checkpoint body`` (the
three body lines with their final newline; this log writes no extension lines). The witness key
is a signed-note verifier key of signature type ``0x04``: ``<name>+<key hash>+<base64(0x04 ||
public key)>``, its key hash ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``. The type byte
keeps a witness key from ever verifying a log signature (type ``0x01``) and the other way round.

A witness's key is its own, never its member signing key (the rules refuse the same key). All
functions are pure and fail closed with :class:`CosignatureError`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from crypto import BadSignatureError, KeyFormatError, PublicKey, SigningKey
from ledger.checkpoint import (
    _SIGNATURE_PREFIX,
    KEY_HASH_SIZE,
    Checkpoint,
    _b64,
    _b64decode_strict,
    _check_name,
    _check_note_text,
)
from ledger.errors import CheckpointError, CosignatureError

__all__ = [
    "COSIGNATURE_TYPE",
    "Cosignature",
    "WitnessKey",
    "cosign",
    "cosigned_by",
    "note_signature_lines",
    "parse_witness_key",
    "signed_message",
    "verify_cosignature",
    "with_cosignatures",
    "witness_key",
]

COSIGNATURE_TYPE = 0x04
_LINE_SIZE = KEY_HASH_SIZE + 8 + 64
MAX_TIME = 2**63 - 1


def _key_hash(name: str, public_key: PublicKey) -> bytes:
    data = name.encode() + b"\n" + bytes([COSIGNATURE_TYPE]) + public_key.raw
    return hashlib.sha256(data).digest()[:KEY_HASH_SIZE]


def _b64decode(text: str, what: str) -> bytes:
    return _b64decode_strict(text, what, CosignatureError)


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessKey:
    """A witness's cosignature/v1 verifier key: name, key hash and Ed25519 public key."""

    name: str
    key_hash: bytes
    public_key: PublicKey

    def text(self) -> str:
        return witness_key(self.name, self.public_key)


def witness_key(name: str, public_key: PublicKey) -> str:
    """``<name>+<8 hex key hash>+<base64(0x04 || public key)>``."""
    try:
        _check_name(name, "witness key name")
    except CheckpointError as exc:
        raise CosignatureError(str(exc)) from exc
    encoded = _b64(bytes([COSIGNATURE_TYPE]) + public_key.raw)
    return f"{name}+{_key_hash(name, public_key).hex()}+{encoded}"


def parse_witness_key(text: object) -> WitnessKey:
    """Parse a cosignature/v1 verifier key strictly (type byte 0x04, key hash checked)."""
    if not isinstance(text, str):
        raise CosignatureError(f"witness key must be a string, found {type(text).__name__}")
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CosignatureError(f"witness key must be <name>+<key hash>+<key>, found {text[:80]!r}")
    name, hash_text, key_text = parts
    try:
        _check_name(name, "witness key name")
    except CheckpointError as exc:
        raise CosignatureError(str(exc)) from exc
    key_data = _b64decode(key_text, "witness key")
    if len(key_data) != 33 or key_data[0] != COSIGNATURE_TYPE:
        raise CosignatureError(
            f"witness key must be 0x04 (cosignature/v1) and a 32-byte Ed25519 key, found "
            f"{len(key_data)} bytes starting with {key_data[:1].hex() or 'nothing'}"
        )
    try:
        public_key = PublicKey(key_data[1:])
    except KeyFormatError as exc:
        raise CosignatureError(f"witness key for {name} is not an Ed25519 key: {exc}") from exc
    expected = _key_hash(name, public_key)
    if hash_text != expected.hex():
        raise CosignatureError(
            f"witness key hash for {name} must be {expected.hex()}, found {hash_text[:20]!r}"
        )
    return WitnessKey(name=name, key_hash=expected, public_key=public_key)


def signed_message(checkpoint: Checkpoint, time: int) -> bytes:
    """What a cosignature/v1 signs: ``cosignature/v1``, ``time <t>``, then the body."""
    return b"cosignature/v1\ntime %d\n" % time + checkpoint.body()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cosignature:
    """A verified cosignature line: which witness, when (UNIX seconds), and the line itself."""

    witness: str  # the witness key's name
    time: int
    line: str


def cosign(checkpoint: Checkpoint, key: SigningKey, *, name: str, time: int) -> str:
    """The cosignature line (without newline) by ``key`` under ``name`` at ``time``."""
    if not 0 <= time <= MAX_TIME:
        raise CosignatureError(f"cosignature time must be in [0, 2**63), found {time}")
    signature = key.sign(signed_message(checkpoint, time))
    raw = _key_hash(name, key.public) + struct.pack(">Q", time) + signature
    return f"{_SIGNATURE_PREFIX}{name} {_b64(raw)}"


def _split_line(line: object) -> tuple[str, bytes]:
    if not isinstance(line, str) or not line.startswith(_SIGNATURE_PREFIX) or "\n" in line:
        raise CosignatureError(
            f"a cosignature line must be '— <key name> <base64>', found {str(line)[:80]!r}"
        )
    fields = line[len(_SIGNATURE_PREFIX) :].split(" ")
    if len(fields) != 2:
        raise CosignatureError(f"a cosignature line must have two fields, found {line[:80]!r}")
    name, encoded = fields
    try:
        _check_name(name, "cosignature key name")
    except CheckpointError as exc:
        raise CosignatureError(str(exc)) from exc
    return name, _b64decode(encoded, "cosignature")


def line_key(line: str) -> tuple[str, bytes]:
    """The key name and key hash a signature line claims (nothing verified)."""
    name, raw = _split_line(line)
    return name, raw[:KEY_HASH_SIZE]


def verify_cosignature(line: str, checkpoint: Checkpoint, witness: WitnessKey) -> Cosignature:
    """The cosignature in ``line`` if ``witness`` made it over ``checkpoint``.

    Raises :class:`CosignatureError` when the line is malformed, names another key (name or
    key hash), is not 76 bytes of key hash, timestamp and signature, or does not verify.
    """
    name, raw = _split_line(line)
    if name != witness.name or raw[:KEY_HASH_SIZE] != witness.key_hash:
        raise CosignatureError(
            f"the cosignature is by {name}+{raw[:KEY_HASH_SIZE].hex()}, not by "
            f"{witness.name}+{witness.key_hash.hex()}"
        )
    if len(raw) != _LINE_SIZE:
        raise CosignatureError(
            f"a cosignature/v1 must be {_LINE_SIZE} bytes (key hash, time, signature), found "
            f"{len(raw)}"
        )
    (time,) = struct.unpack(">Q", raw[KEY_HASH_SIZE : KEY_HASH_SIZE + 8])
    if time > MAX_TIME:
        raise CosignatureError(f"cosignature time {time} is beyond 2**63 - 1")
    try:
        witness.public_key.verify(raw[KEY_HASH_SIZE + 8 :], signed_message(checkpoint, time))
    except BadSignatureError as exc:
        raise CosignatureError(
            f"the cosignature by {witness.name} does not verify over checkpoint "
            f"{checkpoint.origin} size {checkpoint.size}"
        ) from exc
    return Cosignature(witness=witness.name, time=time, line=line)


def note_signature_lines(note: bytes) -> list[str]:
    """The signature lines of a signed note (each still to be verified)."""
    try:
        text = _check_note_text(note, "signed note")
    except CheckpointError as exc:
        raise CosignatureError(str(exc)) from exc
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise CosignatureError("signed note has no signature block")
    return text[split + 2 : -1].split("\n")


def cosigned_by(
    note: bytes, checkpoint: Checkpoint, witnesses: Mapping[str, WitnessKey]
) -> frozenset[str]:
    """The names in ``witnesses`` with a verifying cosignature on ``checkpoint`` in ``note``.
    Lines by other keys are ignored (as the signed-note spec requires), and so is a line by one
    of ``witnesses`` that does not verify: it simply does not count."""
    by_key = {(w.name, w.key_hash): name for name, w in witnesses.items()}
    found: set[str] = set()
    try:
        lines = note_signature_lines(note)
    except CheckpointError:
        return frozenset()
    for line in lines:
        try:
            name = by_key.get(line_key(line))
            if name is not None:
                verify_cosignature(line, checkpoint, witnesses[name])
                found.add(name)
        except CheckpointError:
            continue
    return frozenset(found)


def with_cosignatures(note: bytes, lines: list[str]) -> bytes:
    """``note`` (signed by the log) with ``lines`` appended to its signature block."""
    if not lines:
        return note
    return note + "".join(line + "\n" for line in lines).encode()
