"""The age format: round trips, attacks on the ciphertext, the C2SP test vectors, the age CLI.

Attack tests are table-driven and named for what the attacker does. Interoperability is shown
three ways: the spec's own key example, vectors of the age test kit (C2SP CCTV ``age/testdata``,
reproduced byte for byte in the encrypt direction too), and the real ``age`` command.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import stat
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto import (
    AgeIdentity,
    AgeRecipient,
    DecryptionError,
    InsecureKeyFileError,
    KeyFileError,
    KeyFormatError,
    NoIdentityMatchError,
    age_format,
    bech32,
    decrypt_bytes,
    decrypt_file,
    decrypt_stream,
    encrypt_bytes,
    encrypt_file,
    encrypt_stream,
    load_identity,
    save_identity,
)
from crypto.age_format import b64encode, header_mac

CHUNK = 64 * 1024
SEALED = CHUNK + 16

ALICE = AgeIdentity.from_bytes(hashlib.sha256(b"alice").digest())
BOB = AgeIdentity.from_bytes(hashlib.sha256(b"bob").digest())
CAROL = AgeIdentity.from_bytes(hashlib.sha256(b"carol").digest())
MALLORY = AgeIdentity.from_bytes(hashlib.sha256(b"mallory").digest())


def plaintext(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def header_length(ciphertext: bytes) -> int:
    return ciphertext.index(b"\n--- ") + len(b"\n--- ") + 43 + 1


def payload_key(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(HKDF(SHA256(), 32, nonce, b"payload").derive(file_key))


def chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + bytes([last])


# --- round trips -----------------------------------------------------------------------------

SIZES = [0, 1, 15, 65535, 65536, 65537, 2 * 65536, 3 * 65536, 3 * 65536 + 1]
SIZES += random.Random(2026).sample(range(2, 5 * CHUNK), 4)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int) -> None:
    data = plaintext(size, seed=size)
    source, sink = io.BytesIO(data), io.BytesIO()
    written = encrypt_stream(source, sink, [ALICE.recipient])
    ciphertext = sink.getvalue()
    assert written == len(ciphertext)
    # One chunk per started 64 KiB (at least one): a payload of whole chunks ends with a full
    # final chunk, never with an empty one.
    chunks = max(1, -(-size // CHUNK))
    assert len(ciphertext) == header_length(ciphertext) + 16 + size + 16 * chunks
    out = io.BytesIO()
    assert decrypt_stream(io.BytesIO(ciphertext), out, [ALICE]) == size
    assert out.getvalue() == data


def test_every_file_has_fresh_keys_and_nonce() -> None:
    first, second = (encrypt_bytes(b"same", [ALICE.recipient]) for _ in range(2))
    assert first != second
    assert first[header_length(first) :][:16] != second[header_length(second) :][:16]


def test_multiple_recipients_each_decrypt() -> None:
    data = plaintext(100_000)
    ciphertext = encrypt_bytes(data, [ALICE.recipient, BOB.recipient, CAROL.recipient])
    assert ciphertext.count(b"\n-> X25519 ") == 3
    for identity in (ALICE, BOB, CAROL):
        assert decrypt_bytes(ciphertext, [identity]) == data
    assert decrypt_bytes(ciphertext, [MALLORY, CAROL]) == data
    with pytest.raises(NoIdentityMatchError):
        decrypt_bytes(ciphertext, [MALLORY])


class Recording(io.BytesIO):
    """Remembers the largest read and write asked of it."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__(data)
        self.largest_read = 0
        self.largest_write = 0

    def read(self, size: int | None = -1, /) -> bytes:
        assert size is not None and size >= 0, "must never read to end of file"
        self.largest_read = max(self.largest_read, size)
        return super().read(size)

    def readinto(self, buffer: memoryview, /) -> int:  # type: ignore[override]
        self.largest_read = max(self.largest_read, len(buffer))
        return super().readinto(buffer)

    def write(self, data: object, /) -> int:
        assert isinstance(data, bytes | bytearray | memoryview)
        self.largest_write = max(self.largest_write, len(data))
        return super().write(data)


def test_streams_with_bounded_reads_and_writes() -> None:
    data = plaintext(5 * CHUNK + 7)
    source, sealed = Recording(data), Recording()
    encrypt_stream(source, sealed, [ALICE.recipient])
    assert 0 < source.largest_read <= CHUNK
    assert sealed.largest_write <= SEALED + 200  # the first write carries the header
    opened_source, opened = Recording(sealed.getvalue()), Recording()
    decrypt_stream(opened_source, opened, [ALICE])
    assert 0 < opened_source.largest_read <= SEALED  # one sealed chunk at most
    assert opened.largest_write <= CHUNK
    assert opened.getvalue() == data


class Trickle(io.BytesIO):
    """A pipe-like stream: never more than 7 bytes a read."""

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(min(size if size is not None and size >= 0 else 7, 7))

    def readinto(self, buffer: memoryview, /) -> int:  # type: ignore[override]
        return super().readinto(memoryview(buffer)[:7])


class ReadOnly:
    """A stream with ``read`` and nothing else (no ``readinto``)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(min(size, 1000))


@pytest.mark.parametrize("stream", [Trickle, ReadOnly])
def test_short_reads_from_pipe_like_sources(stream: Callable[[bytes], BinaryIO]) -> None:
    data = plaintext(2 * CHUNK + 3)
    ciphertext = encrypt_bytes(data, [BOB.recipient])
    sink = io.BytesIO()
    encrypt_stream(stream(data), sink, [BOB.recipient])
    assert decrypt_bytes(sink.getvalue(), [BOB]) == data
    out = io.BytesIO()
    decrypt_stream(stream(ciphertext), out, [BOB])
    assert out.getvalue() == data
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt_stream(stream(ciphertext[: header_length(ciphertext) + 16 + SEALED]), out, [BOB])


def test_same_bytes_without_the_into_methods_of_older_cryptography(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = plaintext(2 * CHUNK + 1)
    fast = io.BytesIO()
    encrypt_stream(io.BytesIO(data), fast, [ALICE.recipient], random_bytes=KitRandom())
    monkeypatch.setattr(age_format, "_INTO", False)
    slow = io.BytesIO()
    encrypt_stream(io.BytesIO(data), slow, [ALICE.recipient], random_bytes=KitRandom())
    assert slow.getvalue() == fast.getvalue()  # same randomness, same bytes
    assert decrypt_bytes(slow.getvalue(), [ALICE]) == data
    payload = header_length(slow.getvalue()) + 16
    with pytest.raises(DecryptionError, match="chunk 1 failed"):
        decrypt_bytes(flip(slow.getvalue(), payload + SEALED + 5), [ALICE])


def test_refuses_to_encrypt_to_nobody_or_decrypt_with_nothing() -> None:
    with pytest.raises(ValueError, match="recipient"):
        encrypt_bytes(b"x", [])
    with pytest.raises(ValueError, match="identity"):
        decrypt_bytes(encrypt_bytes(b"x", [ALICE.recipient]), [])


# --- attacks on the ciphertext ---------------------------------------------------------------

DATA = plaintext(3 * CHUNK + 100, seed=7)
SEALED_FILE = encrypt_bytes(DATA, [ALICE.recipient, BOB.recipient])
HEADER = header_length(SEALED_FILE)
PAYLOAD = HEADER + 16  # first chunk


def chunk_span(index: int) -> tuple[int, int]:
    start = PAYLOAD + index * SEALED
    return start, min(start + SEALED, len(SEALED_FILE))


def assert_refused(ciphertext: bytes, match: str | None = None) -> None:
    """Decryption fails, and what reached the output is only whole, authenticated chunks."""
    out = io.BytesIO()
    with pytest.raises(DecryptionError, match=match):
        decrypt_stream(io.BytesIO(ciphertext), out, [ALICE])
    released = out.getvalue()
    assert len(released) % CHUNK == 0
    assert DATA.startswith(released)


def test_wrong_identity_is_a_clear_error() -> None:
    with pytest.raises(NoIdentityMatchError, match=MALLORY.recipient.to_string()):
        decrypt_bytes(SEALED_FILE, [MALLORY])


TRUNCATIONS = sorted(
    {*range(0, PAYLOAD + 20), *range(PAYLOAD, len(SEALED_FILE), 4099)}
    | {start + delta for i in range(4) for start in chunk_span(i) for delta in (-17, -16, -1, 1)}
    | {chunk_span(i)[1] for i in range(3)}
)


@pytest.mark.parametrize("length", [n for n in TRUNCATIONS if n < len(SEALED_FILE)])
def test_rejects_truncation(length: int) -> None:
    assert_refused(SEALED_FILE[:length])


@pytest.mark.parametrize("index", range(3))
def test_rejects_truncation_at_a_chunk_boundary_with_a_clear_reason(index: int) -> None:
    assert_refused(SEALED_FILE[: chunk_span(index)[1]], match="truncated")


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


@pytest.mark.parametrize("offset", range(HEADER))
def test_rejects_flipped_header_byte(offset: int) -> None:
    assert_refused(flip(SEALED_FILE, offset))


@pytest.mark.parametrize("offset", range(HEADER - 44, HEADER - 1))
def test_rejects_flipped_header_mac(offset: int) -> None:
    # A different MAC character that keeps the line well formed base64.
    swapped = b"A" if SEALED_FILE[offset : offset + 1] != b"A" else b"B"
    tampered = SEALED_FILE[:offset] + swapped + SEALED_FILE[offset + 1 :]
    assert_refused(tampered, match="MAC|canonical|malformed")


@pytest.mark.parametrize("offset", range(HEADER, PAYLOAD))
def test_rejects_flipped_payload_nonce(offset: int) -> None:
    assert_refused(flip(SEALED_FILE, offset), match="chunk 0 failed authentication")


@pytest.mark.parametrize(
    "offset",
    [PAYLOAD, PAYLOAD + 1, PAYLOAD + CHUNK - 1, PAYLOAD + CHUNK, PAYLOAD + SEALED - 1]
    + [chunk_span(i)[0] + 12345 for i in range(1, 3)]
    + [len(SEALED_FILE) - 117, len(SEALED_FILE) - 1],
)
def test_rejects_flipped_payload_byte(offset: int) -> None:
    assert_refused(flip(SEALED_FILE, offset, 0x80), match="failed authentication")


def test_rejects_swapped_chunks() -> None:
    spans = [chunk_span(i) for i in range(4)]
    chunks = [SEALED_FILE[a:b] for a, b in spans]
    head = SEALED_FILE[:PAYLOAD]
    assert_refused(head + chunks[1] + chunks[0] + chunks[2] + chunks[3], "chunk 0 failed")
    assert_refused(head + chunks[0] + chunks[2] + chunks[1] + chunks[3], "chunk 1 failed")
    assert_refused(head + chunks[0] + chunks[1] + chunks[3], "chunk 2 failed")  # one dropped
    assert_refused(head + chunks[0] + chunks[0] + chunks[1] + chunks[2] + chunks[3])


def test_rejects_a_chunk_from_another_file() -> None:
    other = encrypt_bytes(DATA, [ALICE.recipient])
    start, end = chunk_span(1)
    assert_refused(SEALED_FILE[:start] + other[start:end] + SEALED_FILE[end:], "chunk 1")


def test_rejects_a_header_from_another_file() -> None:
    other = encrypt_bytes(DATA, [ALICE.recipient, BOB.recipient])
    assert_refused(other[:HEADER] + SEALED_FILE[HEADER:], "chunk 0 failed")


@pytest.mark.parametrize("garbage", [b"\x00", b"garbage", bytes(16), bytes(SEALED)])
def test_rejects_trailing_garbage_after_a_short_final_chunk(garbage: bytes) -> None:
    assert_refused(SEALED_FILE + garbage)


@pytest.mark.parametrize("garbage", [b"\x00", bytes(17), bytes(SEALED), bytes(SEALED + 1)])
def test_rejects_trailing_garbage_after_a_full_final_chunk(garbage: bytes) -> None:
    data = plaintext(2 * CHUNK)
    ciphertext = encrypt_bytes(data, [ALICE.recipient])
    with pytest.raises(DecryptionError, match="trailing data after its final chunk 1"):
        decrypt_bytes(ciphertext + garbage, [ALICE])


def test_rejects_a_header_mac_from_an_identical_looking_file() -> None:
    # Same stanzas, different file key: the MAC of one does not fit the other.
    other = encrypt_bytes(DATA, [ALICE.recipient, BOB.recipient])
    tampered = SEALED_FILE[: HEADER - 44] + other[HEADER - 44 : HEADER] + SEALED_FILE[HEADER:]
    assert_refused(tampered, "MAC does not verify")


# --- the STREAM rules, with a file key we know ---------------------------------------------


def fixed_random(file_key: bytes) -> Callable[[int], bytes]:
    """Hands out ``file_key`` first, then fresh randomness (ephemeral keys and the nonce)."""
    given = [file_key]
    return lambda size: given.pop() if given else os.urandom(size)


def forge(chunks: list[tuple[bytes, bool]]) -> bytes:
    """A file for ALICE whose payload we seal by hand: (plaintext, final flag) per chunk."""
    file_key = bytes(range(16))
    empty = io.BytesIO()
    encrypt_stream(io.BytesIO(b""), empty, [ALICE.recipient], random_bytes=fixed_random(file_key))
    head = empty.getvalue()[: header_length(empty.getvalue()) + 16]
    aead = payload_key(file_key, head[-16:])
    sealed = [
        aead.encrypt(chunk_nonce(i, last), data, None) for i, (data, last) in enumerate(chunks)
    ]
    return head + b"".join(sealed)


def test_forge_helper_builds_valid_files() -> None:
    data = plaintext(CHUNK + 5)
    assert decrypt_bytes(forge([(data[:CHUNK], False), (data[CHUNK:], True)]), [ALICE]) == data
    assert decrypt_bytes(forge([(b"", True)]), [ALICE]) == b""
    assert decrypt_bytes(forge([(data[:CHUNK], True)]), [ALICE]) == data[:CHUNK]


STREAM_ATTACKS: dict[str, tuple[list[tuple[bytes, bool]], str]] = {
    "empty final chunk after a full chunk": (
        [(bytes(CHUNK), False), (b"", True)],
        "empty final chunk",
    ),
    "no final chunk": ([(bytes(CHUNK), False)], "truncated"),
    "final flag on a middle chunk": (
        [(bytes(CHUNK), True), (b"x", True)],
        "trailing data after its final chunk 0",
    ),
    "two final chunks": ([(bytes(CHUNK), True), (bytes(CHUNK), True)], "trailing data"),
    "short chunk that is not final": ([(b"short", False)], "truncated"),
    "short chunk before the final one": (
        [(b"short", False), (b"x", True)],
        "chunk 0 failed authentication",
    ),
    "no chunk at all": ([], "payload has no chunk"),
}


@pytest.mark.parametrize("chunks,reason", STREAM_ATTACKS.values(), ids=list(STREAM_ATTACKS))
def test_rejects_stream_rule_violations(chunks: list[tuple[bytes, bool]], reason: str) -> None:
    with pytest.raises(DecryptionError, match=reason):
        decrypt_bytes(forge(chunks), [ALICE])


def test_rejects_missing_payload_nonce() -> None:
    ciphertext = encrypt_bytes(b"", [ALICE.recipient])
    header = header_length(ciphertext)
    for cut in (header, header + 15):
        with pytest.raises(DecryptionError, match="nonce is missing"):
            decrypt_bytes(ciphertext[:cut], [ALICE])


HEADER_ATTACKS = {
    "not an age file": b"hello world\n",
    "future version": b"age-encryption.org/v2\n-> X25519 AAAA\n\n--- " + b"A" * 43 + b"\n",
    "crlf line ends": SEALED_FILE[:HEADER].replace(b"\n", b"\r\n") + SEALED_FILE[HEADER:],
    "no stanza": b"age-encryption.org/v1\n--- " + b"A" * 43 + b"\n" + bytes(32),
    "empty argument": SEALED_FILE.replace(b"-> X25519 ", b"-> X25519  ", 1),
    "padded base64 body": SEALED_FILE.replace(b"\n--- ", b"=\n--- ", 1),
    "long header": b"age-encryption.org/v1\n" + b"-> x\n" * 300_000,
    "unterminated line": b"age-encryption.org/v1\n-> X25519 " + b"A" * 2_000_000,
}


@pytest.mark.parametrize("ciphertext", HEADER_ATTACKS.values(), ids=list(HEADER_ATTACKS))
def test_rejects_malformed_headers(ciphertext: bytes) -> None:
    with pytest.raises(DecryptionError) as raised:
        decrypt_bytes(ciphertext, [ALICE])
    assert not isinstance(raised.value, NoIdentityMatchError)


def test_ignores_stanzas_of_other_types() -> None:
    # A stanza we do not know (a plugin, scrypt, post-quantum) is skipped, as the spec says;
    # the header MAC still covers it.
    file_key = bytes(16)
    sink = io.BytesIO()
    encrypt_stream(io.BytesIO(b"hi"), sink, [ALICE.recipient], random_bytes=fixed_random(file_key))
    original = sink.getvalue()
    version = b"age-encryption.org/v1\n"
    grease = b"-> example.org/grease a b\n" + b"Z" * 64 + b"\nYQ\n"
    covered = version + grease + original[len(version) : original.index(b"\n--- ") + 4]
    mac = b64encode(header_mac(file_key, covered))
    rebuilt = covered + b" " + mac + b"\n" + original[header_length(original) :]
    assert decrypt_bytes(rebuilt, [ALICE]) == b"hi"
    # Without the right MAC, the added stanza is caught.
    stale = covered + original[header_length(original) - 45 :]
    with pytest.raises(DecryptionError, match="MAC"):
        decrypt_bytes(stale, [ALICE])


# --- interoperability: the spec and its test kit ---------------------------------------------


def test_spec_example_identity_and_recipient() -> None:
    # c2sp.org/age, "The X25519 recipient type": an identity of 32 bytes 0x42.
    identity = AgeIdentity.from_string(
        "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
    )
    assert identity.to_string() == AgeIdentity.from_bytes(b"\x42" * 32).to_string()
    assert identity.recipient.to_string() == (
        "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
    )


# Vectors from the age test kit (C2SP/CCTV age/testdata, as vendored in FiloSottile/age
# testdata/testkit), licensed 0BSD/CC0. Each is a textual header and a binary payload; the
# payloads are given in hex. The kit derives all randomness from a ChaCha20 keystream (key
# "TEST RANDOMNESS TEST RANDOMNESS!", zero nonce) and uses the file key "YELLOW SUBMARINE".
KIT_IDENTITY = "AGE-SECRET-KEY-1XMWWC06LY3EE5RYTXM9MFLAZ2U56JJJ36S0MYPDRWSVLUL66MV4QX3S7F6"
KIT_IDENTITY_2 = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"
KIT_FILE_KEY = b"YELLOW SUBMARINE"
KIT_PAYLOAD_AGE = bytes.fromhex(  # "age" sealed under nonce = keystream[32:48]
    "eecf62c7ce91b433274e68d4f2f9134cb74c5bfef7beaa52c8f0bc0e992c1e8331fb66"
)
KIT_PAYLOAD_AGE_2 = bytes.fromhex(  # "age" sealed under nonce = keystream[96:112]
    "f0b818be0f355442399920ad8084964b6f95c36db35e4f59d8f89e3cf26f2d1fa54213"
)
SHA256_OF_AGE = "013f54400c82da08037759ada907a8b864e97de81c088a182062c4b5622fd2ab"
SHA256_OF_NOTHING = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

KIT_STANZA = (
    b"-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\n"
    b"EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw7U\n"
)
KIT_X25519 = (
    b"age-encryption.org/v1\n" + KIT_STANZA + b"--- Vn+54jqiiUCE+WZcEVY3f1sqHjlu/z1LCQ/T7Xm7qI0\n"
) + KIT_PAYLOAD_AGE
KIT_MULTIPLE_RECIPIENTS = (
    b"age-encryption.org/v1\n"
    b"-> X25519 ajtqAvDEkVNr2B7zUOtq2mAQXDSBlNrVAuM/dKb5sT4\n"
    b"0evrK/HQXVsQ4YaDe+659l5OQzvAzD2ytLGHQLQiqxg\n"
    b"-> X25519 0qC7u6AbLxuwnM8tPFOWVtWZn/ZZe7z7gcsP5kgA0FI\n"
    b"T/PZg76MmVt2IaLntrxppzDnzeFDYHsHFcnTnhbRLQ8\n"
    b"--- 7W07ef2PhsTAl74pn+9vSj/Xzukwa6SuTqMc16cdBk0\n"
) + KIT_PAYLOAD_AGE_2

# name: (expect, identity, file)
KIT_VECTORS: dict[str, tuple[str, str, bytes]] = {
    "x25519": ("success", KIT_IDENTITY, KIT_X25519),
    "x25519_multiple_recipients": ("success", KIT_IDENTITY, KIT_MULTIPLE_RECIPIENTS),
    "x25519_bad_tag": (
        "no match",
        KIT_IDENTITY,
        b"age-encryption.org/v1\n"
        b"-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\n"
        b"EmECAEcKN+n/Vs9SbWiV+Hu0r+E8R77DdWYyd83nw0o\n"
        b"--- tG0k9bg4iIuBdMWb13n7FFYDzoBbtsLppNLhbh22aKg\n" + KIT_PAYLOAD_AGE,
    ),
    "x25519_lowercase": (
        "no match",
        KIT_IDENTITY,
        b"age-encryption.org/v1\n" + KIT_STANZA.replace(b"X25519", b"x25519") + b"--- "
        b"SwXKO3dXLh9l5QiSgMWgPhCkwstT8oB4jLDv7aBgC+c\n" + KIT_PAYLOAD_AGE,
    ),
    "x25519_not_canonical_share": (
        "header failure",
        KIT_IDENTITY,
        b"age-encryption.org/v1\n" + KIT_STANZA.replace(b"OCc\n", b"OCd\n") + b"--- "
        b"AO6haEGU6BGJ8Tzeqnr2fSLEo31JrWodGtZuCZmijI8\n" + KIT_PAYLOAD_AGE,
    ),
    "x25519_extra_argument": (
        "header failure",
        KIT_IDENTITY,
        b"age-encryption.org/v1\n" + KIT_STANZA.replace(b"OCc\n", b"OCc 1234\n") + b"--- "
        b"hQQySEUXL8pOuIOuw0qXzi66RphDJP9IKMNEChNJIPk\n" + KIT_PAYLOAD_AGE,
    ),
    "x25519_low_order": (  # its payload is not needed: the header fails first
        "header failure",
        KIT_IDENTITY_2,
        b"age-encryption.org/v1\n"
        b"-> X25519 X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEdc\n"
        b"3E0NpFans/m0WLWF7+54ZBdNj3iqQqpraGDFiaRkvBA\n"
        b"--- sXw327YMT1/ULXe+ZyRMbMY0Z2jnWHGgI9j1we6yQ8A\n" + KIT_PAYLOAD_AGE,
    ),
    "hmac_trailing_space": (
        "header failure",
        KIT_IDENTITY_2,
        b"age-encryption.org/v1\n"
        b"-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\n"
        b"hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE\n"
        b"--- WyJp9F/9FOZh7gJdheq2WIJcwHgYc8NIVh3ddwhrcNg \n" + KIT_PAYLOAD_AGE,
    ),
    "hmac_garbage": (
        "header failure",
        KIT_IDENTITY_2,
        b"age-encryption.org/v1\n"
        b"-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\n"
        b"hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE\n"
        b"--- WyJp9F/9FOZh7gJdheq2WIJcwHgYc8NIVh3ddwhrcNgAAA\n" + KIT_PAYLOAD_AGE,
    ),
    "stanza_missing_final_line": (
        "header failure",
        KIT_IDENTITY,
        b"age-encryption.org/v1\n" + KIT_STANZA + b"-> stanza\n" + b"A" * 64 + b"\n"
        b"--- GRjUy1ShNhFoV3cQikdtUZqDeDEZSrbtNXUgDtDbwC8\n" + KIT_PAYLOAD_AGE,
    ),
    "version_unsupported": (
        "header failure",
        KIT_IDENTITY,
        b"age-encryption.org/v1234\n" + KIT_STANZA + b"--- "
        b"38AL8Mr4VwmS6CNbM4bc7u3WwGBDqsMTRHOuYJ9ckqs\n" + KIT_PAYLOAD_AGE,
    ),
    "stream_no_chunks": (
        "payload failure",
        KIT_IDENTITY,
        KIT_X25519[: -len(KIT_PAYLOAD_AGE)] + KIT_PAYLOAD_AGE[:16],
    ),
}


@pytest.mark.parametrize("expect,identity,ciphertext", KIT_VECTORS.values(), ids=list(KIT_VECTORS))
def test_age_test_kit_vector(expect: str, identity: str, ciphertext: bytes) -> None:
    out = io.BytesIO()

    def decrypt() -> int:
        return decrypt_stream(io.BytesIO(ciphertext), out, [AgeIdentity.from_string(identity)])

    if expect == "success":
        decrypt()
        assert hashlib.sha256(out.getvalue()).hexdigest() == SHA256_OF_AGE
        return
    with pytest.raises(DecryptionError) as raised:
        decrypt()
    assert isinstance(raised.value, NoIdentityMatchError) == (expect == "no match")
    if expect == "payload failure":
        assert hashlib.sha256(out.getvalue()).hexdigest() == SHA256_OF_NOTHING


class KitRandom:
    """The test kit's randomness: the file key first, then its ChaCha20 keystream."""

    def __init__(self, skip: int = 0) -> None:
        self._keystream = Cipher(
            algorithms.ChaCha20(b"TEST RANDOMNESS TEST RANDOMNESS!", bytes(16)), mode=None
        ).encryptor()
        self.skipped = self._keystream.update(bytes(skip))
        self._file_key_given = False

    def __call__(self, size: int) -> bytes:
        if not self._file_key_given:
            self._file_key_given = True
            assert size == len(KIT_FILE_KEY)
            return KIT_FILE_KEY
        return self._keystream.update(bytes(size))


def test_encryption_reproduces_the_kit_x25519_vector_byte_for_byte() -> None:
    recipient = AgeIdentity.from_string(KIT_IDENTITY).recipient
    sink = io.BytesIO()
    encrypt_stream(io.BytesIO(b"age"), sink, [recipient], random_bytes=KitRandom())
    assert sink.getvalue() == KIT_X25519


def test_encryption_reproduces_the_kit_multiple_recipients_vector() -> None:
    randomness = KitRandom(skip=32)  # the kit draws the other identity first
    other = AgeIdentity.from_bytes(randomness.skipped)
    recipients = [other.recipient, AgeIdentity.from_string(KIT_IDENTITY).recipient]
    sink = io.BytesIO()
    encrypt_stream(io.BytesIO(b"age"), sink, recipients, random_bytes=randomness)
    assert sink.getvalue() == KIT_MULTIPLE_RECIPIENTS
    assert decrypt_bytes(KIT_MULTIPLE_RECIPIENTS, [other]) == b"age"


# --- keys ------------------------------------------------------------------------------------


def test_keys_round_trip_through_their_strings() -> None:
    identity = AgeIdentity.generate()
    text = identity.to_string()
    assert text.startswith("AGE-SECRET-KEY-1") and text == text.upper()
    assert AgeIdentity.from_string(text).recipient == identity.recipient
    public = identity.recipient.to_string()
    assert public.startswith("age1") and public == public.lower()
    assert AgeRecipient.from_string(public) == identity.recipient
    assert str(identity.recipient) == public
    assert "SECRET" not in repr(identity) and public in repr(identity)


BAD_KEYS: dict[str, tuple[Callable[[str], object], str, str]] = {
    "lowercase identity": (
        AgeIdentity.from_string,
        ALICE.to_string().lower(),
        "must be uppercase",
    ),
    "uppercase recipient": (
        AgeRecipient.from_string,
        ALICE.recipient.to_string().upper(),
        "must be lowercase",
    ),
    "recipient given as identity": (
        AgeIdentity.from_string,
        ALICE.recipient.to_string(),
        "expected an age X25519 identity",
    ),
    "identity given as recipient": (
        AgeRecipient.from_string,
        ALICE.to_string(),
        "expected an age X25519 recipient",
    ),
    "mistyped recipient": (
        AgeRecipient.from_string,
        ALICE.recipient.to_string()[:-1] + "q",
        "checksum",
    ),
    "short recipient": (
        AgeRecipient.from_string,
        bech32.encode("age", bytes(31)),
        "32 bytes",
    ),
    "low-order recipient": (
        AgeRecipient.from_string,
        bech32.encode("age", bytes(32)),
        "low-order",
    ),
    "post-quantum recipient": (
        AgeRecipient.from_string,
        bech32.encode("age1pq", bytes(32)),
        "age1pq",
    ),
    "whitespace": (AgeRecipient.from_string, " " + ALICE.recipient.to_string(), "outside"),
}


@pytest.mark.parametrize("parse,text,reason", BAD_KEYS.values(), ids=list(BAD_KEYS))
def test_rejects_malformed_keys(parse: Callable[[str], object], text: str, reason: str) -> None:
    with pytest.raises(KeyFormatError, match=reason):
        parse(text)


def test_encrypting_to_a_low_order_point_is_impossible() -> None:
    with pytest.raises(KeyFormatError, match="low-order"):
        AgeRecipient(bytes([1]) + bytes(31))


# --- identity files --------------------------------------------------------------------------


def test_identity_file_is_created_0600_in_age_keygen_format(tmp_path: Path) -> None:
    path = tmp_path / "alice.age"
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        save_identity(path, ALICE, now=datetime(2026, 11, 25, 17, 0, tzinfo=UTC))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines() == [
        "# created: 2026-11-25T17:00:00Z",
        f"# public key: {ALICE.recipient}",
        ALICE.to_string(),
    ]
    assert load_identity(path).recipient == ALICE.recipient


def test_refuses_to_overwrite_an_identity_file(tmp_path: Path) -> None:
    path = tmp_path / "k.age"
    save_identity(path, ALICE)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        save_identity(path, BOB)
    assert load_identity(path).recipient == ALICE.recipient


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606])
def test_refuses_identity_file_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.age"
    save_identity(path, ALICE)
    path.chmod(mode)
    with pytest.raises(InsecureKeyFileError, match="chmod 600"):
        load_identity(path)


def test_refuses_identity_file_behind_symlink(tmp_path: Path) -> None:
    save_identity(tmp_path / "real.age", ALICE)
    (tmp_path / "link.age").symlink_to(tmp_path / "real.age")
    with pytest.raises(KeyFileError):
        load_identity(tmp_path / "link.age")


@pytest.mark.parametrize(
    "text,reason",
    [
        (f"# public key: {BOB.recipient}\n{ALICE.to_string()}\n", "says its public key"),
        (f"{ALICE.to_string()}\n{BOB.to_string()}\n", "found 2"),
        ("# nothing here\n\n", "found 0"),
        (f"{ALICE.to_string()[:-1]}Q\n", "checksum"),
    ],
    ids=["public key comment lies", "two identities", "no identity", "damaged key"],
)
def test_rejects_bad_identity_files(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "k.age"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(KeyFormatError, match=reason):
        load_identity(path)


# --- files -----------------------------------------------------------------------------------


def test_file_round_trip_writes_plaintext_0600(tmp_path: Path) -> None:
    data = plaintext(CHUNK * 2 + 9)
    (tmp_path / "result.csv").write_bytes(data)
    written = encrypt_file(tmp_path / "result.csv", tmp_path / "result.csv.age", [BOB.recipient])
    assert written == (tmp_path / "result.csv.age").stat().st_size
    assert decrypt_file(tmp_path / "result.csv.age", tmp_path / "out.csv", [BOB]) == len(data)
    assert (tmp_path / "out.csv").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o600


def test_decrypt_file_leaves_nothing_behind_on_error(tmp_path: Path) -> None:
    sealed = tmp_path / "in.age"
    sealed.write_bytes(SEALED_FILE[:-1])  # truncated: the first 3 chunks authenticate
    target = tmp_path / "out"
    target.write_bytes(b"previous")
    with pytest.raises(DecryptionError, match="chunk 3"):
        decrypt_file(sealed, target, [ALICE])
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.age", "out"]


# --- interoperability: the age command -------------------------------------------------------

AGE = shutil.which("age")
needs_age = pytest.mark.skipif(
    AGE is None, reason="the age CLI is not installed (Debian: apt-get install age)"
)


def run_age(*args: str | Path, stdin: BinaryIO | None = None) -> bytes:
    assert AGE is not None
    result = subprocess.run([AGE, *map(str, args)], stdin=stdin, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


@needs_age
@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 100])
def test_age_cli_decrypts_what_we_encrypt(tmp_path: Path, size: int) -> None:
    data = plaintext(size, seed=size)
    (tmp_path / "in.age").write_bytes(encrypt_bytes(data, [MALLORY.recipient, BOB.recipient]))
    save_identity(tmp_path / "bob.key", BOB)
    # To stdout: age 1.1 creates an -o file only on its first write, so not for an empty one.
    assert run_age("--decrypt", "-i", tmp_path / "bob.key", tmp_path / "in.age") == data


@needs_age
@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 100])
def test_we_decrypt_what_age_cli_encrypts(tmp_path: Path, size: int) -> None:
    data = plaintext(size, seed=size)
    (tmp_path / "in").write_bytes(data)
    run_age(
        "-r",
        str(MALLORY.recipient),
        "-r",
        str(ALICE.recipient),
        "-o",
        tmp_path / "in.age",
        tmp_path / "in",
    )
    assert decrypt_bytes((tmp_path / "in.age").read_bytes(), [ALICE]) == data
    with pytest.raises(NoIdentityMatchError):
        decrypt_bytes((tmp_path / "in.age").read_bytes(), [BOB])


@needs_age
def test_age_keygen_identity_files_load_and_decrypt(tmp_path: Path) -> None:
    keygen = shutil.which("age-keygen")
    if keygen is None:
        pytest.skip("age-keygen is not installed")
    subprocess.run([keygen, "-o", tmp_path / "key.txt"], check=True, capture_output=True)
    identity = load_identity(tmp_path / "key.txt")
    (tmp_path / "msg").write_bytes(b"partial result")
    run_age("-i", tmp_path / "key.txt", "-e", "-o", tmp_path / "msg.age", tmp_path / "msg")
    assert decrypt_bytes((tmp_path / "msg.age").read_bytes(), [identity]) == b"partial result"


@needs_age
def test_age_cli_also_refuses_our_tampered_file(tmp_path: Path) -> None:
    save_identity(tmp_path / "alice.key", ALICE)
    (tmp_path / "bad.age").write_bytes(flip(SEALED_FILE, PAYLOAD + 100))
    assert AGE is not None
    result = subprocess.run(
        [AGE, "-d", "-i", tmp_path / "alice.key", tmp_path / "bad.age"],
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
