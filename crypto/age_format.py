"""The wire format of age (C2SP ``age-encryption.org/v1``), without the keys.

Canonical base64, HKDF, the header grammar and MAC, and the STREAM payload; :mod:`crypto.age`
adds the X25519 recipient type and the public API on top. Every parse failure raises
:class:`crypto.errors.DecryptionError`.

Header grammar (spec section "Header")::

    header    = "age-encryption.org/v1" LF 1*stanza "--- " 43base64char LF
    stanza    = "-> " argument *(SP argument) LF *(64base64char LF) *63base64char LF
    argument  = 1*VCHAR

Payload: a 16-byte nonce, then 64 KiB plaintext chunks sealed with ChaCha20-Poly1305 under
``HKDF(ikm=file key, salt=nonce, info="payload")``, nonce = 11-byte big-endian counter || 0x01
for the final chunk, 0x00 otherwise. Only an empty file has an empty (final) chunk.
"""

from __future__ import annotations

import base64
import hmac
import re
from hashlib import sha256
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import DecryptionError

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
FILE_KEY_SIZE = 16
NONCE_SIZE = 16
KEY_SIZE = 32
MAX_HEADER_SIZE = 1 << 20  # far above any real header (about 100 bytes a recipient)

VERSION_LINE = b"age-encryption.org/v1\n"
_VERSION_PREFIX = b"age-encryption.org/"
_SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*")
_BODY_COLUMNS = 64
_MAC_COLUMNS = 43

Stanza = tuple[list[bytes], bytes]
"""A parsed recipient stanza: its arguments and its decoded body."""


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA-256 (extract with ``salt``, expand with ``info``) to 32 bytes."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(ikm)


def b64encode(data: bytes) -> bytes:
    """Unpadded standard base64."""
    return base64.b64encode(data).rstrip(b"=")


def b64decode(text: bytes) -> bytes | None:
    """Canonical unpadded base64 (RFC 4648 section 3.5: no padding, zero spare bits), or None."""
    if len(text) % 4 == 1 or not _BASE64.fullmatch(text):
        return None
    data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    return data if b64encode(data) == text else None


def stanza_bytes(arguments: list[bytes], body: bytes) -> bytes:
    """A recipient stanza: its argument line, then the body wrapped at 64 columns."""
    encoded = b64encode(body)
    lines = [encoded[i : i + _BODY_COLUMNS] for i in range(0, len(encoded), _BODY_COLUMNS)]
    if not lines or len(lines[-1]) == _BODY_COLUMNS:
        lines.append(b"")  # the body always ends with a line shorter than 64 columns
    return b" ".join([b"->", *arguments]) + b"\n" + b"".join(line + b"\n" for line in lines)


def header_mac(file_key: bytes, covered: bytes) -> bytes:
    """HMAC-SHA-256 of the header up to and including ``---``, keyed from the file key."""
    return hmac.new(hkdf(file_key, b"", b"header"), covered, sha256).digest()


def header_bytes(stanzas: list[bytes], file_key: bytes) -> bytes:
    """The whole header, MAC line included, from already encoded stanzas."""
    covered = VERSION_LINE + b"".join(stanzas) + b"---"
    return covered + b" " + b64encode(header_mac(file_key, covered)) + b"\n"


def payload_aead(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(hkdf(file_key, nonce, b"payload"))


def chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Reader:
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
                if self._consumed + index + 1 > MAX_HEADER_SIZE:
                    break
                line = bytes(self._buffer[: index + 1])
                del self._buffer[: index + 1]
                self._consumed += len(line)
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
        out = bytearray(size)
        return bytes(out[: self.readinto(memoryview(out))])

    def readinto(self, view: memoryview) -> int:
        """Fill ``view``, first from what the header left over; short only at end of file."""
        taken = min(len(self._buffer), len(view))
        if taken:
            view[:taken] = self._buffer[:taken]
            del self._buffer[:taken]
        return taken + readinto_full(self._stream, view[taken:])


def readinto_full(stream: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``stream``; short only at end of file (pipes and sockets read short)."""
    readinto = getattr(stream, "readinto", None)  # every io class has it; BinaryIO does not say
    filled = 0
    while filled < len(view):
        if readinto is not None:
            count = readinto(view[filled:])
        else:
            data = stream.read(len(view) - filled)
            count = len(data)
            view[filled : filled + count] = data
        if not count:
            break
        filled += count
    return filled


def write_all(dst: BinaryIO, data: bytes | memoryview) -> None:
    written = dst.write(data)
    if written is not None and written < len(data):  # raw streams may write short
        view = memoryview(data)[written:]
        while view:
            view = view[dst.write(view) :]


def read_header(reader: Reader) -> tuple[list[Stanza], bytes, bytes]:
    """Parse the header: (stanzas, MAC, the bytes the MAC covers). Raise DecryptionError."""
    covered = bytearray()
    first = reader.header_line()
    if first != VERSION_LINE:
        if first.startswith(_VERSION_PREFIX):
            found = first.rstrip(b"\n").decode("ascii", "replace")
            raise DecryptionError(f"unsupported age version {found!r}; expected {VERSION_LINE!r}")
        raise DecryptionError("not an age file: it does not start with 'age-encryption.org/v1'")
    covered += first
    stanzas: list[Stanza] = []
    while True:
        line = reader.header_line()
        number = len(stanzas) + 1
        if line.startswith(b"--- "):
            mac = b64decode(line[4:-1]) if len(line) == 4 + _MAC_COLUMNS + 1 else None
            if mac is None:
                raise DecryptionError("age header MAC line is malformed")
            if not stanzas:
                raise DecryptionError("age header has no recipient stanza")
            return stanzas, mac, bytes(covered) + b"---"
        if not line.startswith(b"-> "):
            raise DecryptionError(f"unexpected line in age header: {line[:40]!r}")
        covered += line
        arguments = line[3:-1].split(b" ")
        for argument in arguments:
            if not argument or any(not 0x21 <= byte <= 0x7E for byte in argument):
                raise DecryptionError(
                    f"recipient stanza {number} has an empty or non-printable argument"
                )
        encoded = bytearray()
        while True:
            body_line = reader.header_line()
            covered += body_line
            content = body_line[:-1]
            if len(content) > _BODY_COLUMNS or not _BASE64.fullmatch(content):
                raise DecryptionError(f"recipient stanza {number} has a malformed body line")
            encoded += content
            if len(content) < _BODY_COLUMNS:
                break
        body = b64decode(bytes(encoded))
        if body is None:
            raise DecryptionError(f"recipient stanza {number} body is not canonical base64")
        stanzas.append((arguments, body))


# ``encrypt_into``/``decrypt_into`` (newer ``cryptography``) seal into one reused buffer instead
# of a fresh 64 KiB object a chunk; the result is the same bytes either way.
_INTO = hasattr(ChaCha20Poly1305, "encrypt_into") and hasattr(ChaCha20Poly1305, "decrypt_into")


def _seal(aead: ChaCha20Poly1305, nonce: bytes, chunk: memoryview, out: memoryview) -> memoryview:
    view = out[: len(chunk) + TAG_SIZE]
    if _INTO:
        aead.encrypt_into(nonce, chunk, None, view)
    else:
        view[:] = aead.encrypt(nonce, chunk, None)
    return view


def _open(aead: ChaCha20Poly1305, nonce: bytes, sealed: memoryview, out: memoryview) -> memoryview:
    """The plaintext, or InvalidTag; ``out`` is private: on failure nothing leaves it."""
    view = out[: max(0, len(sealed) - TAG_SIZE)]
    if _INTO:
        aead.decrypt_into(nonce, sealed, None, view)
    else:
        view[:] = aead.decrypt(nonce, sealed, None)
    return view


def encrypt_payload(src: BinaryIO, dst: BinaryIO, aead: ChaCha20Poly1305) -> int:
    """Seal ``src`` chunk by chunk into ``dst``; return the bytes written.

    ``dst.write`` gets a view of a buffer that is reused for the next chunk, so it must consume
    the data before it returns (as files, sockets and ``BytesIO`` do).
    """
    chunk, following = memoryview(bytearray(CHUNK_SIZE)), memoryview(bytearray(CHUNK_SIZE))
    out = memoryview(bytearray(_SEALED_CHUNK))
    size = readinto_full(src, chunk)
    counter = 0
    written = 0
    while True:
        # Read ahead one chunk: the final chunk is the one that end of file follows, and it
        # may be a full 64 KiB (never an empty chunk after full ones).
        following_size = readinto_full(src, following) if size == CHUNK_SIZE else 0
        last = following_size == 0
        sealed = _seal(aead, chunk_nonce(counter, last), chunk[:size], out)
        write_all(dst, sealed)
        written += len(sealed)
        if last:
            return written
        chunk, following, size = following, chunk, following_size
        counter += 1


def _open_chunk(
    aead: ChaCha20Poly1305, counter: int, sealed: memoryview, last: bool, out: memoryview
) -> memoryview:
    """Open chunk ``counter``; ``last`` says whether the file ends right after it."""
    try:
        return _open(aead, chunk_nonce(counter, last), sealed, out)
    except InvalidTag:
        pass
    try:  # only to say what went wrong; nothing from this attempt is released
        _open(aead, chunk_nonce(counter, not last), sealed, out)
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


def decrypt_payload(reader: Reader, dst: BinaryIO, aead: ChaCha20Poly1305) -> int:
    """Open the chunks after the nonce; write each to ``dst`` once it authenticates.

    ``dst.write`` gets a view of a reused buffer, as in :func:`encrypt_payload`.
    """
    sealed, following = memoryview(bytearray(_SEALED_CHUNK)), memoryview(bytearray(_SEALED_CHUNK))
    out = memoryview(bytearray(CHUNK_SIZE))
    size = reader.readinto(sealed)
    if not size:
        raise DecryptionError("age file is truncated: the payload has no chunk")
    counter = 0
    written = 0
    while True:
        following_size = reader.readinto(following) if size == _SEALED_CHUNK else 0
        last = following_size == 0
        plaintext = _open_chunk(aead, counter, sealed[:size], last, out)
        if last and not plaintext and counter > 0:
            raise DecryptionError(
                f"age payload ends with an empty final chunk {counter}; only an empty file "
                f"may have one"
            )
        write_all(dst, plaintext)
        written += len(plaintext)
        if last:
            return written
        sealed, following, size = following, sealed, following_size
        counter += 1
