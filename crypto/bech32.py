"""Bech32 (BIP-173, not Bech32m) as the age format uses it: strict, with no length limit.

age encodes its recipients (``age1...``) and identities (``AGE-SECRET-KEY-1...``) in Bech32. The
age spec (C2SP ``age``) takes BIP-173 as is, except that the 90-character limit is lifted.

Invariants:
- A string is all lowercase or all uppercase; mixed case is refused.
- The checksum is always computed over the lowercase form, and always verified.
- The human-readable part (HRP) is 1 or more characters in the printable ASCII range 33..126.
- :func:`decode` converts the 5-bit groups back to bytes strictly: at most 4 padding bits, all
  zero (so every byte string has exactly one encoding).
- :func:`decode` returns the HRP exactly as written (case preserved) so that a caller can insist
  on the case it expects: age identities are uppercase, recipients lowercase.

Every failure raises :class:`crypto.errors.KeyFormatError`: in this package Bech32 carries keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crypto.errors import KeyFormatError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {char: value for value, char in enumerate(CHARSET)}
_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_CHECKSUM_LENGTH = 6
_BECH32_CONSTANT = 1  # Bech32m would use 0x2BC830A3; age uses plain Bech32


def _polymod(values: Iterable[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = ((checksum & 0x1FFFFFF) << 5) ^ value
        for bit, generator in enumerate(_GENERATORS):
            if (top >> bit) & 1:
                checksum ^= generator
    return checksum


def _expand_hrp(hrp: str) -> list[int]:
    codes = [ord(char) for char in hrp]
    return [code >> 5 for code in codes] + [0] + [code & 31 for code in codes]


def _check_hrp(hrp: str) -> None:
    if not hrp:
        raise KeyFormatError("Bech32 human-readable part is empty")
    for char in hrp:
        if not 33 <= ord(char) <= 126:
            raise KeyFormatError(
                f"Bech32 human-readable part has character {char!r} outside ASCII 33..126"
            )


def _create_checksum(hrp: str, words: Sequence[int]) -> list[int]:
    polymod = _polymod([*_expand_hrp(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ _BECH32_CONSTANT
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(_CHECKSUM_LENGTH)]


def encode_words(hrp: str, words: Sequence[int]) -> str:
    """Encode 5-bit groups under ``hrp``; the result is lowercase."""
    _check_hrp(hrp)
    if hrp.lower() != hrp and hrp.upper() != hrp:
        raise KeyFormatError(f"Bech32 human-readable part {hrp!r} mixes upper and lower case")
    for word in words:
        if not 0 <= word < 32:
            raise KeyFormatError(f"Bech32 data value {word} is not a 5-bit group")
    lower = hrp.lower()
    checksum = _create_checksum(lower, words)
    return lower + "1" + "".join(CHARSET[word] for word in [*words, *checksum])


def decode_words(text: str) -> tuple[str, list[int]]:
    """Split and verify a Bech32 string; return its HRP (as written) and its 5-bit groups."""
    for char in text:
        if not 33 <= ord(char) <= 126:
            raise KeyFormatError(f"Bech32 string has character {char!r} outside ASCII 33..126")
    if text.lower() != text and text.upper() != text:
        raise KeyFormatError("Bech32 string mixes upper and lower case")
    separator = text.rfind("1")
    if separator < 0:
        raise KeyFormatError("Bech32 string has no '1' separator")
    hrp, data = text[:separator], text[separator + 1 :].lower()
    _check_hrp(hrp)
    if len(data) < _CHECKSUM_LENGTH:
        raise KeyFormatError(
            f"Bech32 data part is {len(data)} characters; the checksum alone needs "
            f"{_CHECKSUM_LENGTH}"
        )
    words: list[int] = []
    for char in data:
        value = _VALUES.get(char)
        if value is None:
            raise KeyFormatError(f"Bech32 data part has invalid character {char!r}")
        words.append(value)
    if _polymod([*_expand_hrp(hrp.lower()), *words]) != _BECH32_CONSTANT:
        raise KeyFormatError("Bech32 checksum does not verify (a mistyped or damaged key?)")
    return hrp, words[:-_CHECKSUM_LENGTH]


def _to_words(data: bytes) -> list[int]:
    words: list[int] = []
    accumulator = 0
    bits = 0
    for byte in data:
        accumulator = (accumulator << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((accumulator >> bits) & 31)
    if bits:
        words.append((accumulator << (5 - bits)) & 31)
    return words


def _from_words(words: Sequence[int]) -> bytes:
    out = bytearray()
    accumulator = 0
    bits = 0
    for word in words:
        accumulator = ((accumulator << 5) | word) & 0xFFF
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((accumulator >> bits) & 0xFF)
    if bits >= 5:
        raise KeyFormatError("Bech32 data has a whole unused 5-bit group at its end")
    if accumulator & ((1 << bits) - 1):
        raise KeyFormatError("Bech32 data has non-zero padding bits")
    return bytes(out)


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under ``hrp``; the result is lowercase (uppercase it for age identities)."""
    return encode_words(hrp, _to_words(data))


def decode(text: str) -> tuple[str, bytes]:
    """Decode a Bech32 string into its HRP (as written) and its bytes; raise KeyFormatError."""
    hrp, words = decode_words(text)
    return hrp, _from_words(words)
