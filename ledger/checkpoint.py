"""Checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes with Ed25519 signatures.

A checkpoint body is exactly three lines (https://c2sp.org/tlog-checkpoint)::

    <origin>
    <tree size, decimal, no leading zeros>
    <base64 of the 32-byte RFC 9162 root hash>

and the signed note (https://c2sp.org/signed-note) is that body, one blank line, then signature
lines ``— <key name> <base64(4-byte key hash || 64-byte Ed25519 signature)>``. The signature
covers the body bytes exactly (the C2SP format is its own domain separation; no ``pht/v1``
prefix). The key hash is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` and a verifier key
is written ``<name>+<8 hex digits of the key hash>+<base64(0x01 || public key)>``. The registry
signs with the origin as key name (DESIGN 4).

Parsing is strict and fails closed with :class:`CheckpointError`:

- the note is at most :data:`MAX_NOTE_SIZE` bytes of UTF-8 without control characters other
  than newline, ends in a newline and has at most :data:`MAX_SIGNATURES` signature lines, every
  one well formed;
- signature lines from other keys (another name or key hash) are ignored, as the spec requires;
  a line from the trusted key that does not verify rejects the whole note, and so does a note
  with no verifying line from it;
- the body is parsed only after its signature verified; extension lines are rejected (this log
  never writes them, and the spec advises against them), and so is an origin other than the one
  expected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from crypto import BadSignatureError, KeyFormatError, PublicKey, SigningKey
from ledger.errors import CheckpointError
from ledger.merkle import HASH_SIZE, MAX_TREE_SIZE

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointError",
    "NoteVerifier",
    "key_hash",
    "open_note",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
    "verify_checkpoint",
]

MAX_NOTE_SIZE = 16 * 1024
MAX_SIGNATURES = 100
ED25519_TYPE = 0x01
KEY_HASH_SIZE = 4

_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_SIZE_PATTERN = re.compile(r"0|[1-9][0-9]*")
_KEY_HASH_PATTERN = re.compile(r"[0-9a-f]{8}")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x09\x0b-\x1f]")
_ED25519_SIGNATURE_SIZE = 64


def _check_name(name: object, what: str) -> str:
    """A key name or origin: non-empty text without spaces, ``+`` or control characters."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{what} must be a non-empty string, found {name!r}")
    if name.isascii() and name.isprintable() and " " not in name and "+" not in name:
        return name  # the usual case, decided in C: ASCII control characters are unprintable
    for char in name:
        if char.isspace() or char == "+" or ord(char) < 0x20 or ord(char) == 0x7F:
            raise CheckpointError(
                f"{what} must not contain spaces, '+' or control characters, found {name!r}"
            )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise CheckpointError(f"{what} is not encodable as UTF-8, found {name!r}") from exc
    return name


def _b64decode_strict(
    text: str, what: str, error: type[CheckpointError] = CheckpointError
) -> bytes:
    """Standard base64 with padding, in the one canonical spelling only; ``error`` otherwise
    (the cosignature module raises its own kind of CheckpointError)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise error(f"{what} is not valid base64: {text[:80]!r}") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"{what} is not canonical base64: {text[:80]!r}")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# -- the checkpoint body ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A tree head: the log's origin, its size and its RFC 9162 root hash."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        _check_name(self.origin, "checkpoint origin")
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= MAX_TREE_SIZE
        ):
            raise CheckpointError(
                f"checkpoint size must be an integer in [0, 2**63), found {self.size!r}"
            )
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            found = len(self.root) if isinstance(self.root, bytes) else type(self.root).__name__
            raise CheckpointError(f"checkpoint root must be {HASH_SIZE} bytes, found {found}")

    def body(self) -> bytes:
        """The note text: ``<origin>\\n<size>\\n<base64 root>\\n`` in UTF-8."""
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n".encode()

    @classmethod
    def parse_body(cls, body: bytes) -> Checkpoint:
        """Parse a body made by :meth:`body`; anything else raises :class:`CheckpointError`."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"checkpoint body is not UTF-8: {exc}") from exc
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint body must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) != 3:
            raise CheckpointError(
                f"checkpoint body must have 3 lines (origin, size, root), found {len(lines)}"
            )
        origin, size_text, root_text = lines
        if not _SIZE_PATTERN.fullmatch(size_text):
            raise CheckpointError(
                f"checkpoint size must be decimal digits without leading zeros, "
                f"found {size_text[:40]!r}"
            )
        if len(size_text) > 19:
            raise CheckpointError(f"checkpoint size {size_text[:40]} exceeds 2**63 - 1")
        root = _b64decode_strict(root_text, "checkpoint root")
        return cls(origin=origin, size=int(size_text), root=root)


# -- verifier keys -------------------------------------------------------------------------------


def key_hash(name: str, public_key: PublicKey) -> bytes:
    """The 4-byte key hash: ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``."""
    data = name.encode() + b"\n" + bytes([ED25519_TYPE]) + public_key.raw
    return hashlib.sha256(data).digest()[:KEY_HASH_SIZE]


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteVerifier:
    """A trusted Ed25519 note key: its name, its key hash and its public key (always coherent)."""

    name: str
    key_hash: bytes
    public_key: PublicKey

    def __post_init__(self) -> None:
        _check_name(self.name, "verifier key name")
        if not isinstance(self.public_key, PublicKey):
            raise CheckpointError(
                f"verifier public key must be a PublicKey, found {type(self.public_key).__name__}"
            )
        expected = key_hash(self.name, self.public_key)
        if self.key_hash != expected:
            found = self.key_hash.hex() if isinstance(self.key_hash, bytes) else self.key_hash
            raise CheckpointError(
                f"key hash for {self.name} must be {expected.hex()}, found {found!r}"
            )

    @classmethod
    def for_key(cls, name: str, public_key: PublicKey) -> NoteVerifier:
        """The verifier for ``public_key`` under key name ``name`` (the log's origin)."""
        return cls(
            name=_check_name(name, "key name"),
            key_hash=key_hash(name, public_key),
            public_key=public_key,
        )

    def text(self) -> str:
        """The verifier key string (see :func:`verifier_key`)."""
        return verifier_key(self.name, self.public_key)


def verifier_key(name: str, public_key: PublicKey) -> str:
    """``<name>+<8 hex key hash>+<base64(0x01 || public key)>``."""
    _check_name(name, "key name")
    encoded = _b64(bytes([ED25519_TYPE]) + public_key.raw)
    return f"{name}+{key_hash(name, public_key).hex()}+{encoded}"


def key_fingerprint(text: str) -> str:
    """The log key's fingerprint, for a person to compare: the hex SHA-256 of its raw Ed25519
    key, in groups of four (what ``pht init``, ``siteclient init`` and the web view show)."""
    digest = hashlib.sha256(parse_verifier_key(text).public_key.raw).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def parse_verifier_key(text: str) -> NoteVerifier:
    """Parse a verifier key string strictly; the key hash must match the name and key."""
    if not isinstance(text, str):
        raise CheckpointError(f"verifier key must be a string, found {type(text).__name__}")
    parts = text.split("+", 2)  # the base64 key may itself contain '+'
    if len(parts) != 3:
        raise CheckpointError(
            f"verifier key must be <name>+<key hash>+<key>, found {len(parts)} '+'-separated "
            f"parts in {text[:80]!r}"
        )
    name, hash_text, key_text = parts
    _check_name(name, "verifier key name")
    if not _KEY_HASH_PATTERN.fullmatch(hash_text):
        raise CheckpointError(
            f"verifier key hash must be 8 lowercase hex digits, found {hash_text[:20]!r}"
        )
    key_data = _b64decode_strict(key_text, "verifier key")
    if len(key_data) != 1 + 32 or key_data[0] != ED25519_TYPE:
        raise CheckpointError(
            f"verifier key must be 0x01 followed by a 32-byte Ed25519 key, found "
            f"{len(key_data)} bytes starting with {key_data[:1].hex() or 'nothing'}"
        )
    try:
        public_key = PublicKey(key_data[1:])
    except KeyFormatError as exc:
        raise CheckpointError(f"verifier key for {name} is not an Ed25519 key: {exc}") from exc
    expected = key_hash(name, public_key)
    if bytes.fromhex(hash_text) != expected:
        raise CheckpointError(
            f"verifier key hash for {name} must be {expected.hex()}, found {hash_text}"
        )
    return NoteVerifier(name=name, key_hash=expected, public_key=public_key)


# -- signing and verifying -----------------------------------------------------------------------


def sign_note(text: bytes, signing_key: SigningKey, *, name: str) -> bytes:
    """Sign note ``text`` (UTF-8, ending in a newline) with one Ed25519 line under key ``name``."""
    _check_note_text(text, "note text")
    if not text.endswith(b"\n"):
        raise CheckpointError("note text must end with a newline")
    _check_name(name, "key name")
    signature = key_hash(name, signing_key.public) + signing_key.sign(text)
    return text + f"\n{_SIGNATURE_PREFIX}{name} {_b64(signature)}\n".encode()


def sign_checkpoint(
    checkpoint: Checkpoint, signing_key: SigningKey, *, name: str | None = None
) -> bytes:
    """The signed note for ``checkpoint``, signed under key name ``name`` (default: the origin)."""
    return sign_note(
        checkpoint.body(), signing_key, name=checkpoint.origin if name is None else name
    )


def unverified_size(note: bytes) -> int:
    """The tree size a checkpoint note *claims*, read without verifying anything.

    Only for sizing work before the note can be verified (how many entries to fetch); every
    decision uses :func:`verify_checkpoint` or :mod:`ledger.trust`. Raises
    :class:`CheckpointError` when the note's body cannot be parsed.
    """
    body, _, _ = _check_note_text(note, "signed note").partition("\n\n")
    return Checkpoint.parse_body((body + "\n").encode()).size


def open_note(note: bytes, verifier: NoteVerifier) -> bytes:
    """Verify a signed note from ``verifier`` and return its text (ending in a newline).

    Raises :class:`CheckpointError` when the note is too large, not UTF-8, holds control
    characters, is malformed anywhere, has no verifying signature line from ``verifier`` (name
    and key hash), or has a line from ``verifier`` that does not verify.
    """
    text = _check_note_text(note, "signed note")
    if not text.endswith("\n"):
        raise CheckpointError("signed note must end with a newline")
    split = text.rfind("\n\n")
    if split < 0:
        raise CheckpointError("signed note has no blank line before its signatures")
    # Index the text, not the bytes: they differ once the note holds non-ASCII characters.
    body, signature_block = text[: split + 1].encode(), text[split + 2 :]
    lines = signature_block[:-1].split("\n") if signature_block else []
    if not lines:
        raise CheckpointError("signed note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(
            f"signed note must have at most {MAX_SIGNATURES} signatures, found {len(lines)}"
        )

    verified = False
    for number, line in enumerate(lines, start=1):
        name, signature = _parse_signature_line(line, number)
        if name != verifier.name or signature[:KEY_HASH_SIZE] != verifier.key_hash:
            continue  # another key (a witness, a rotated key): ignored, as the spec requires
        raw = signature[KEY_HASH_SIZE:]
        if len(raw) != _ED25519_SIGNATURE_SIZE:
            raise CheckpointError(
                f"signature line {number} by {verifier.name} must carry a "
                f"{_ED25519_SIGNATURE_SIZE}-byte Ed25519 signature, found {len(raw)} bytes"
            )
        try:
            verifier.public_key.verify(raw, body)
        except BadSignatureError as exc:
            raise CheckpointError(
                f"signature line {number} by {verifier.name}+{verifier.key_hash.hex()} does "
                "not verify over the note text"
            ) from exc
        verified = True
    if not verified:
        raise CheckpointError(
            f"signed note has no signature by {verifier.name}+{verifier.key_hash.hex()}"
        )
    return body


def verify_checkpoint(note: bytes, verifier: NoteVerifier, *, origin: str) -> Checkpoint:
    """Verify a signed checkpoint note from ``verifier`` for the log ``origin``; return it.

    Raises :class:`CheckpointError` for every reason :func:`open_note` gives, and when the
    verified text is not a three-line checkpoint body or names another origin.
    """
    checkpoint = Checkpoint.parse_body(open_note(note, verifier))
    if checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint origin must be {origin!r}, found {checkpoint.origin!r}")
    return checkpoint


def _check_note_text(data: object, what: str) -> str:
    """UTF-8 bytes with no control characters except newline; returns the decoded text."""
    if not isinstance(data, bytes):
        raise CheckpointError(f"{what} must be bytes, found {type(data).__name__}")
    if len(data) > MAX_NOTE_SIZE:
        raise CheckpointError(f"{what} must be at most {MAX_NOTE_SIZE} bytes, found {len(data)}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{what} is not UTF-8: {exc}") from exc
    match = _CONTROL_CHARACTER.search(text)
    if match:
        raise CheckpointError(
            f"{what} must not contain control characters other than newline, found "
            f"{match.group()!r} at {match.start()}"
        )
    return text


def _parse_signature_line(line: str, number: int) -> tuple[str, bytes]:
    """``— <name> <base64>`` into the name and the decoded ``key hash || signature``."""
    if not line.startswith(_SIGNATURE_PREFIX):
        raise CheckpointError(
            f"signature line {number} must start with an em dash and a space, found {line[:40]!r}"
        )
    fields = line[len(_SIGNATURE_PREFIX) :].split(" ")
    if len(fields) != 2:
        raise CheckpointError(
            f"signature line {number} must be '— <key name> <base64>', found {line[:80]!r}"
        )
    name, encoded = fields
    _check_name(name, f"key name on signature line {number}")
    signature = _b64decode_strict(encoded, f"signature on line {number}")
    if len(signature) <= KEY_HASH_SIZE:
        raise CheckpointError(
            f"signature on line {number} must be a key hash and a signature, found "
            f"{len(signature)} bytes"
        )
    return name, signature
