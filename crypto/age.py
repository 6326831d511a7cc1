"""The age file format (C2SP ``age-encryption.org/v1``) for X25519 recipients, streamed.

Results and transferred files are encrypted in this standard format so that a researcher can
also decrypt them with the ``age`` tool. Built on ``cryptography`` primitives only: X25519,
HKDF-SHA-256, HMAC-SHA-256 and ChaCha20-Poly1305.

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

import base64
import hmac
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from hashlib import sha256
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto import bech32
from crypto.errors import (
    DecryptionError,
    InsecureKeyFileError,
    KeyFileError,
    KeyFormatError,
    NoIdentityMatchError,
)
from crypto.keys import write_new_file

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
FILE_KEY_SIZE = 16
NONCE_SIZE = 16
KEY_SIZE = 32
MAX_HEADER_SIZE = 1 << 20  # far above any real header (~100 bytes a recipient)
MAX_IDENTITY_FILE_SIZE = 1 << 16

RECIPIENT_HRP = "age"
IDENTITY_HRP = "AGE-SECRET-KEY-"

_VERSION_PREFIX = b"age-encryption.org/"
_VERSION_LINE = b"age-encryption.org/v1\n"
_X25519_TAG = b"X25519"
_X25519_INFO = b"age-encryption.org/v1/X25519"
_SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE
_ZERO_NONCE = bytes(12)
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/]*")
_BODY_COLUMNS = 64
_MAC_COLUMNS = 43

RandomSource = Callable[[int], bytes]


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(ikm)


def _b64encode(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _b64decode(text: bytes) -> bytes | None:
    """Canonical unpadded base64 (RFC 4648 3.5), or None."""
    if len(text) % 4 == 1 or not _BASE64_LINE.fullmatch(text):
        return None
    data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    return data if _b64encode(data) == text else None


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
        wrap_key = _hkdf(ephemeral.exchange(self._key), share + self.raw, _X25519_INFO)
        body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
        return b"-> X25519 " + _b64encode(share) + b"\n" + _body_lines(body)

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
        wrap_key = _hkdf(secret, share + self.recipient.raw, _X25519_INFO)
        try:
            return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
        except InvalidTag:
            return None

    def __repr__(self) -> str:
        return f"AgeIdentity(recipient={self.recipient.to_string()})"


# --- header --------------------------------------------------------------------------------


def _body_lines(body: bytes) -> bytes:
    encoded = _b64encode(body)
    lines = [encoded[i : i + _BODY_COLUMNS] for i in range(0, len(encoded), _BODY_COLUMNS)]
    if not lines or len(lines[-1]) == _BODY_COLUMNS:
        lines.append(b"")  # the body always ends with a line shorter than 64 columns
    return b"".join(line + b"\n" for line in lines)


def _header_mac(file_key: bytes, header_through_dashes: bytes) -> bytes:
    key = _hkdf(file_key, b"", b"header")
    return hmac.new(key, header_through_dashes, sha256).digest()


class _Reader:
    """Lines for the header, then exact-size reads for the payload, from one stream."""

    __slots__ = ("_buffer", "_consumed", "_stream")

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._consumed = 0

    def header_line(self) -> bytes:
        """The next line with its LF; raise DecryptionError at EOF or past the header limit."""
        start = 0
        while True:
            index = self._buffer.find(b"\n", start)
            if index >= 0:
                line = bytes(self._buffer[: index + 1])
                del self._buffer[: index + 1]
                self._consumed += len(line)
                if self._consumed > MAX_HEADER_SIZE:
                    break
                return line
            if self._consumed + len(self._buffer) > MAX_HEADER_SIZE:
                break
            start = len(self._buffer)
            block = self._stream.read(4096)
            if not block:
                raise DecryptionError("age header is truncated: end of file before its MAC line")
            self._buffer += block
        raise DecryptionError(f"age header is longer than {MAX_HEADER_SIZE} bytes")

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes, fewer only at end of file."""
        parts: list[bytes] = []
        if self._buffer:
            parts.append(bytes(self._buffer[:size]))
            del self._buffer[:size]
        missing = size - sum(map(len, parts))
        while missing > 0:
            block = self._stream.read(missing)
            if not block:
                break
            parts.append(block)
            missing -= len(block)
        return parts[0] if len(parts) == 1 else b"".join(parts)


def _read_header(reader: _Reader) -> tuple[list[tuple[list[bytes], bytes]], bytes, bytes]:
    """Parse the header: (stanzas as (arguments, body), MAC, bytes the MAC covers)."""
    seen = bytearray()
    first = reader.header_line()
    if first != _VERSION_LINE:
        if first.startswith(_VERSION_PREFIX):
            found = first.rstrip(b"\n").decode("ascii", "replace")
            raise DecryptionError(f"unsupported age version {found!r}; expected {_VERSION_LINE!r}")
        raise DecryptionError("not an age file: it does not start with 'age-encryption.org/v1'")
    seen += first
    stanzas: list[tuple[list[bytes], bytes]] = []
    while True:
        line = reader.header_line()
        if line.startswith(b"--- "):
            mac = _b64decode(line[4:-1]) if len(line) == 4 + _MAC_COLUMNS + 1 else None
            if mac is None:
                raise DecryptionError("age header MAC line is malformed")
            if not stanzas:
                raise DecryptionError("age header has no recipient stanza")
            return stanzas, mac, bytes(seen) + b"---"
        if not line.startswith(b"-> "):
            raise DecryptionError(f"unexpected line in age header: {line[:40]!r}")
        seen += line
        arguments = line[3:-1].split(b" ")
        for argument in arguments:
            if not argument or any(not 0x21 <= byte <= 0x7E for byte in argument):
                raise DecryptionError(
                    f"recipient stanza {len(stanzas) + 1} has an empty or non-printable argument"
                )
        encoded = bytearray()
        while True:
            body_line = reader.header_line()
            seen += body_line
            content = body_line[:-1]
            if len(content) > _BODY_COLUMNS or not _BASE64_LINE.fullmatch(content):
                raise DecryptionError(
                    f"recipient stanza {len(stanzas) + 1} has a malformed body line"
                )
            encoded += content
            if len(content) < _BODY_COLUMNS:
                break
        body = _b64decode(bytes(encoded))
        if body is None:
            raise DecryptionError(
                f"recipient stanza {len(stanzas) + 1} body is not canonical base64"
            )
        stanzas.append((arguments, body))


def _unwrap_file_key(
    stanzas: list[tuple[list[bytes], bytes]], identities: Sequence[AgeIdentity]
) -> bytes:
    candidates: list[tuple[bytes, bytes]] = []
    for number, (arguments, body) in enumerate(stanzas, start=1):
        if arguments[0] != _X25519_TAG:
            continue  # another recipient type: not ours to judge
        share = _b64decode(arguments[1]) if len(arguments) == 2 else None
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


# --- payload -------------------------------------------------------------------------------


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _write_all(dst: BinaryIO, data: bytes) -> None:
    written = dst.write(data)
    if written is not None and written < len(data):  # raw streams may write short
        view = memoryview(data)[written:]
        while view:
            view = view[dst.write(view) :]


def _open_chunk(aead: ChaCha20Poly1305, counter: int, sealed: bytes, last: bool) -> bytes:
    """Open chunk ``counter``; ``last`` says whether the file ends right after it."""
    try:
        return aead.decrypt(_chunk_nonce(counter, last), sealed, None)
    except InvalidTag:
        pass
    try:  # only to say what went wrong; nothing from this attempt is released
        aead.decrypt(_chunk_nonce(counter, not last), sealed, None)
    except InvalidTag:
        raise DecryptionError(
            f"age payload chunk {counter} failed authentication: the file was modified, "
            f"truncated, reordered or has trailing data"
        ) from None
    if last:
        raise DecryptionError(
            f"age file is truncated: it ends after chunk {counter}, which is not the final chunk"
        )
    raise DecryptionError(f"age file has trailing data after its final chunk {counter}")


def _decrypt_payload(reader: _Reader, dst: BinaryIO, aead: ChaCha20Poly1305) -> int:
    sealed = reader.read(_SEALED_CHUNK)
    if not sealed:
        raise DecryptionError("age file is truncated: the payload has no chunk")
    counter = 0
    written = 0
    while True:
        following = reader.read(_SEALED_CHUNK) if len(sealed) == _SEALED_CHUNK else b""
        last = not following
        plaintext = _open_chunk(aead, counter, sealed, last)
        if last and not plaintext and counter > 0:
            raise DecryptionError(
                f"age payload ends with an empty final chunk {counter}; only an empty file "
                f"may have one"
            )
        _write_all(dst, plaintext)
        written += len(plaintext)
        if last:
            return written
        sealed = following
        counter += 1


# --- public API ----------------------------------------------------------------------------


def _read_full(src: BinaryIO, size: int) -> bytes:
    data = src.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    missing = size - len(data)
    while missing > 0:
        block = src.read(missing)
        if not block:
            break
        parts.append(block)
        missing -= len(block)
    return b"".join(parts)


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[AgeRecipient],
    *,
    random_bytes: RandomSource = os.urandom,
) -> int:
    """Encrypt ``src`` to ``dst`` for every recipient; return the number of bytes written.

    ``random_bytes`` exists so that tests can reproduce published vectors byte for byte; in
    production leave it alone (``os.urandom``): any other source breaks the encryption.
    """
    if not recipients:
        raise ValueError("encrypt_stream needs at least one recipient")
    file_key = random_bytes(FILE_KEY_SIZE)
    header = bytearray(_VERSION_LINE)
    for recipient in recipients:
        header += recipient._stanza(file_key, random_bytes)
    header += b"---"
    header += b" " + _b64encode(_header_mac(file_key, bytes(header))) + b"\n"
    nonce = random_bytes(NONCE_SIZE)
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    _write_all(dst, bytes(header) + nonce)
    written = len(header) + NONCE_SIZE
    chunk = _read_full(src, CHUNK_SIZE)
    counter = 0
    while True:
        following = _read_full(src, CHUNK_SIZE) if len(chunk) == CHUNK_SIZE else b""
        last = not following
        sealed = aead.encrypt(_chunk_nonce(counter, last), chunk, None)
        _write_all(dst, sealed)
        written += len(sealed)
        if last:
            return written
        chunk = following
        counter += 1


def decrypt_stream(src: BinaryIO, dst: BinaryIO, identities: Sequence[AgeIdentity]) -> int:
    """Decrypt the age file ``src`` into ``dst``; return the number of plaintext bytes written.

    Raises :class:`NoIdentityMatchError` when none of ``identities`` is a recipient and
    :class:`DecryptionError` for any malformed, tampered, truncated, reordered or extended file.
    Only authenticated chunks reach ``dst``, but on an error the caller must discard whatever
    was written (the file as a whole did not verify).
    """
    if not identities:
        raise ValueError("decrypt_stream needs at least one identity")
    reader = _Reader(src)
    stanzas, mac, covered = _read_header(reader)
    file_key = _unwrap_file_key(stanzas, identities)
    if not hmac.compare_digest(_header_mac(file_key, covered), mac):
        raise DecryptionError("age header MAC does not verify: the header was modified")
    nonce = reader.read(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise DecryptionError("age file is truncated: the payload nonce is missing")
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    return _decrypt_payload(reader, dst, aead)


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
        with open(src_path, "rb") as src, os.fdopen(fd, "wb") as tmp:
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
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot open age identity {name}: {exc.strerror}") from exc
    try:
        status = os.fstat(fd)
        if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFileError(
                f"age identity {name} has mode {stat.S_IMODE(status.st_mode):04o}; expected "
                f"0600 (run: chmod 600 {name})"
            )
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_IDENTITY_FILE_SIZE:
            raise KeyFileError(f"age identity {name} is not a small regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_IDENTITY_FILE_SIZE + 1)
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise KeyFormatError(f"age identity {name} is not ASCII text") from exc
    return parse_identity_file(text)
