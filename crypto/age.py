"""The age file format (C2SP ``age-encryption.org/v1``) for X25519 recipients, streamed.

Results and transferred files are encrypted in this standard format so that a researcher can
also decrypt them with the ``age`` tool. Built on ``cryptography`` primitives only: X25519,
HKDF-SHA-256, HMAC-SHA-256 and ChaCha20-Poly1305. The wire format (header grammar, STREAM
payload) lives in :mod:`crypto.age_format`; this module holds the keys, the X25519 recipient
type, the encrypt/decrypt API and identity files.

Format (what :func:`encrypt_stream` writes and :func:`decrypt_stream` accepts)::

    age-encryption.org/v1
    -> X25519 <base64 ephemeral share>
    <base64 of the wrapped 16-byte file key, lines of 64 columns, the last one shorter>
    --- <base64 HMAC-SHA-256 of the header up to and including "---">
    <16-byte nonce><STREAM: 64 KiB chunks, each sealed with ChaCha20-Poly1305>

Invariants:
- Every file gets a fresh random 16-byte file key, a fresh ephemeral X25519 key per recipient
  and a fresh 16-byte payload nonce.
- Memory is bounded: both directions hold at most two 64 KiB chunks, whatever the file size.
- Decryption never releases unauthenticated plaintext: each chunk is written to ``dst`` only
  after its tag verifies. A file that is truncated, reordered, modified, followed by trailing
  data or meant for someone else raises :class:`DecryptionError`; authenticated chunks before
  the failure may already have been written, so **a caller must discard ``dst`` on error**.
  :func:`decrypt_file` does that for you (temp file, rename only on success).
- Parsing is strict as the spec demands: canonical unpadded base64, exact header grammar, an
  X25519 stanza with two arguments and a 32-byte body, no all-zero shared secret. Stanzas of
  other types (scrypt, plugins, post-quantum) are ignored, as the spec requires.
- Identities are ``AGE-SECRET-KEY-1...`` (uppercase Bech32), recipients ``age1...`` (lowercase);
  identity files are the age-keygen format, created 0600 and refused when group or other may
  read them.
"""

from __future__ import annotations

import hmac
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto import bech32
from crypto.age_format import (
    FILE_KEY_SIZE,
    KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    VERSION_LINE,
    Reader,
    Stanza,
    b64decode,
    b64encode,
    decrypt_payload,
    encrypt_payload,
    header_bytes,
    header_mac,
    hkdf,
    payload_aead,
    read_header,
    stanza_bytes,
    write_all,
)
from crypto.errors import (
    DecryptionError,
    KeyFormatError,
    NoIdentityMatchError,
)
from crypto.keys import read_private_file, write_new_file

RECIPIENT_HRP = "age"
IDENTITY_HRP = "AGE-SECRET-KEY-"

_X25519_TAG = b"X25519"
_X25519_INFO = b"age-encryption.org/v1/X25519"
_ZERO_NONCE = bytes(12)

RandomSource = Callable[[int], bytes]


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- keys ----------------------------------------------------------------------------------


class AgeRecipient:
    """An X25519 public key that files can be encrypted to; compares by its raw bytes."""

    __slots__ = ("_key", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_SIZE:
            raise KeyFormatError(f"an age recipient is {KEY_SIZE} bytes, found {len(raw)}")
        key = X25519PublicKey.from_public_bytes(raw)
        try:  # a low-order point gives an all-zero shared secret whatever the other key
            X25519PrivateKey.generate().exchange(key)
        except ValueError as exc:
            raise KeyFormatError("age recipient is a low-order X25519 point") from exc
        self._key = key
        self.raw: bytes = bytes(raw)

    @classmethod
    def from_string(cls, text: str) -> AgeRecipient:
        """Parse ``age1...``; raise :class:`KeyFormatError`."""
        hrp, raw = bech32.decode(text)
        if hrp != RECIPIENT_HRP:
            if hrp.lower() == RECIPIENT_HRP:
                raise KeyFormatError("an age recipient must be lowercase ('age1...')")
            raise KeyFormatError(
                f"expected an age X25519 recipient (lowercase 'age1...'), found prefix {hrp!r}"
            )
        return cls(raw)

    def to_string(self) -> str:
        return bech32.encode(RECIPIENT_HRP, self.raw)

    def _stanza(self, file_key: bytes, random_bytes: RandomSource) -> bytes:
        ephemeral = X25519PrivateKey.from_private_bytes(random_bytes(KEY_SIZE))
        share = _raw_public(ephemeral.public_key())
        wrap_key = hkdf(ephemeral.exchange(self._key), share + self.raw, _X25519_INFO)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return stanza_bytes([_X25519_TAG, b64encode(share)], body)

    def __str__(self) -> str:
        return self.to_string()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgeRecipient) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"AgeRecipient({self.to_string()})"


class AgeIdentity:
    """An X25519 private key that decrypts files sent to its :attr:`recipient`. Never printed."""

    __slots__ = ("_key", "recipient")

    def __init__(self, key: X25519PrivateKey) -> None:
        self._key = key
        self.recipient = AgeRecipient(_raw_public(key.public_key()))

    @classmethod
    def generate(cls) -> AgeIdentity:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> AgeIdentity:
        """An identity from its 32 raw bytes (deterministic keys for tests and examples)."""
        if len(raw) != KEY_SIZE:
            raise KeyFormatError(f"an age identity is {KEY_SIZE} bytes, found {len(raw)}")
        return cls(X25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def from_string(cls, text: str) -> AgeIdentity:
        """Parse ``AGE-SECRET-KEY-1...`` (uppercase, as age writes it); raise KeyFormatError."""
        hrp, raw = bech32.decode(text)
        if hrp != IDENTITY_HRP:
            if hrp.upper() == IDENTITY_HRP:
                raise KeyFormatError("an age identity must be uppercase ('AGE-SECRET-KEY-1...')")
            raise KeyFormatError(
                f"expected an age X25519 identity ('AGE-SECRET-KEY-1...'), found prefix {hrp!r}"
            )
        return cls.from_bytes(raw)

    def to_string(self) -> str:
        raw = self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return bech32.encode(IDENTITY_HRP, raw).upper()

    def _unwrap(self, share: bytes, body: bytes) -> bytes | None:
        """The file key if this X25519 stanza is for us, else None; raise on a low-order share."""
        try:
            secret = self._key.exchange(X25519PublicKey.from_public_bytes(share))
        except ValueError as exc:
            raise DecryptionError(
                "X25519 stanza has a low-order ephemeral share (all-zero shared secret)"
            ) from exc
        wrap_key = hkdf(secret, share + self.recipient.raw, _X25519_INFO)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
        except InvalidTag:
            return None

    def __repr__(self) -> str:
        return f"AgeIdentity(recipient={self.recipient.to_string()})"


# --- the X25519 recipient stanza ---------------------------------------------------------


def _unwrap_file_key(stanzas: list[Stanza], identities: Sequence[AgeIdentity]) -> bytes:
    candidates: list[tuple[bytes, bytes]] = []
    for number, (arguments, body) in enumerate(stanzas, start=1):
        if arguments[0] != _X25519_TAG:
            continue  # another recipient type: not ours to judge
        share = b64decode(arguments[1]) if len(arguments) == 2 else None
        if share is None or len(share) != KEY_SIZE:
            raise DecryptionError(
                f"X25519 stanza {number} must have one argument, the canonical base64 of a "
                f"{KEY_SIZE}-byte share"
            )
        if len(body) != FILE_KEY_SIZE + TAG_SIZE:
            raise DecryptionError(
                f"X25519 stanza {number} body is {len(body)} bytes; expected "
                f"{FILE_KEY_SIZE + TAG_SIZE}"
            )
        candidates.append((share, body))
    for share, body in candidates:
        for identity in identities:
            file_key = identity._unwrap(share, body)
            if file_key is not None:
                return file_key
    ours = ", ".join(identity.recipient.to_string() for identity in identities)
    raise NoIdentityMatchError(
        f"this file is not encrypted to {ours}: none of its {len(stanzas)} recipient "
        f"stanza(s) ({len(candidates)} X25519) opens with the given identities"
    )


# --- encryption and decryption ----------------------------------------------------------


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[AgeRecipient],
    *,
    random_bytes: RandomSource = os.urandom,
) -> int:
    """Encrypt ``src`` to ``dst`` for every recipient; return the number of bytes written.

    ``dst.write`` receives views of a buffer reused for the next chunk: it must consume the
    data before returning, as files, sockets and ``BytesIO`` do. ``random_bytes`` exists so
    that tests can reproduce published vectors byte for byte; in production leave it alone
    (``os.urandom``): any other source breaks the encryption.
    """
    if not recipients:
        raise ValueError("encrypt_stream needs at least one recipient")
    file_key = random_bytes(FILE_KEY_SIZE)
    stanzas = [recipient._stanza(file_key, random_bytes) for recipient in recipients]
    nonce = random_bytes(NONCE_SIZE)
    head = header_bytes(stanzas, file_key) + nonce
    write_all(dst, head)
    return len(head) + encrypt_payload(src, dst, payload_aead(file_key, nonce))


def decrypt_stream(src: BinaryIO, dst: BinaryIO, identities: Sequence[AgeIdentity]) -> int:
    """Decrypt the age file ``src`` into ``dst``; return the number of plaintext bytes written.

    Raises :class:`NoIdentityMatchError` when none of ``identities`` is a recipient and
    :class:`DecryptionError` for any malformed, tampered, truncated, reordered or extended file.
    Only authenticated chunks reach ``dst``, but on an error the caller must discard whatever
    was written (the file as a whole did not verify). ``dst.write`` receives views of a reused
    buffer, as in :func:`encrypt_stream`.
    """
    if not identities:
        raise ValueError("decrypt_stream needs at least one identity")
    reader = Reader(src)
    stanzas, mac, covered = read_header(reader)
    file_key = _unwrap_file_key(stanzas, identities)
    if not hmac.compare_digest(header_mac(file_key, covered), mac):
        raise DecryptionError("age header MAC does not verify: the header was modified")
    nonce = reader.read(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise DecryptionError("age file is truncated: the payload nonce is missing")
    return decrypt_payload(reader, dst, payload_aead(file_key, nonce))


def is_age(data: bytes) -> bool:
    """``data`` starts like an age file (its version line); a cheap test, not a check."""
    return data.startswith(VERSION_LINE)


def is_age_file(path: Path) -> bool:
    """The file at ``path`` starts like an age file."""
    with open(path, "rb") as handle:
        return is_age(handle.read(len(VERSION_LINE)))


def encrypt_bytes(data: bytes, recipients: Sequence[AgeRecipient]) -> bytes:
    out = BytesIO()
    encrypt_stream(BytesIO(data), out, recipients)
    return out.getvalue()


def decrypt_bytes(data: bytes, identities: Sequence[AgeIdentity]) -> bytes:
    out = BytesIO()
    decrypt_stream(BytesIO(data), out, identities)
    return out.getvalue()


def _atomic_output(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    work: Callable[[BinaryIO, BinaryIO], int],
) -> int:
    """Run ``work(src, tmp)`` into a 0600 temp file beside ``dst_path``; rename on success only."""
    target = Path(dst_path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp, open(src_path, "rb") as src:
            written = work(src, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return written


def encrypt_file(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    recipients: Sequence[AgeRecipient],
) -> int:
    """Encrypt a file to ``dst_path`` (written to a temp file, then renamed); bytes written."""
    return _atomic_output(src_path, dst_path, lambda s, d: encrypt_stream(s, d, recipients))


def decrypt_file(
    src_path: str | os.PathLike[str],
    dst_path: str | os.PathLike[str],
    identities: Sequence[AgeIdentity],
) -> int:
    """Decrypt to ``dst_path`` (mode 0600) only if the whole file verifies; plaintext bytes.

    The plaintext goes to a temp file beside ``dst_path`` that is renamed over it on success
    and removed on any error, so ``dst_path`` never holds a partial or unverified plaintext.
    """
    return _atomic_output(src_path, dst_path, lambda s, d: decrypt_stream(s, d, identities))


# --- identity files ------------------------------------------------------------------------


def save_identity(
    path: str | os.PathLike[str], identity: AgeIdentity, *, now: datetime | None = None
) -> None:
    """Write an age-keygen style identity file, created 0600 (no race); never overwrite."""
    created = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = (
        f"# created: {created}\n"
        f"# public key: {identity.recipient.to_string()}\n"
        f"{identity.to_string()}\n"
    )
    write_new_file(path, text.encode("ascii"), mode=0o600)


def parse_identity_file(text: str) -> AgeIdentity:
    """The one identity in an identity file's text (comments and blank lines skipped)."""
    identities: list[AgeIdentity] = []
    claimed: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.startswith("# public key:"):
            claimed.append(line.removeprefix("# public key:").strip())
        elif line and not line.startswith("#"):
            identities.append(AgeIdentity.from_string(line))
    if len(identities) != 1:
        raise KeyFormatError(f"expected one age identity in the file, found {len(identities)}")
    identity = identities[0]
    for public in claimed:
        if public != identity.recipient.to_string():
            raise KeyFormatError(
                f"identity file says its public key is {public} but the key in it is "
                f"{identity.recipient.to_string()}"
            )
    return identity


def load_identity(path: str | os.PathLike[str]) -> AgeIdentity:
    """Load an identity file, refusing symlinks and files that group or other may access."""
    data = read_private_file(path, what="age identity")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise KeyFormatError(f"age identity {os.fspath(path)} is not ASCII text") from exc
    return parse_identity_file(text)
