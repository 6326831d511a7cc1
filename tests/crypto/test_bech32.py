"""Bech32 against the BIP-173 test vectors, with age's one change: no length limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto import KeyFormatError
from crypto.bech32 import decode, decode_words, encode, encode_words

# BIP-173, "Test vectors": valid Bech32 strings.
VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]

# BIP-173, "Test vectors": invalid Bech32 strings and why.
INVALID = {
    "hrp character out of range (0x20)": "\x201nwldj5",
    "hrp character out of range (0x7f)": "\x7f1axkwrx",
    "hrp character out of range (0x80)": "\x801eym55h",
    "no separator character": "pzry9x0s0muk",
    "empty hrp": "1pzry9x0s0muk",
    "invalid data character": "x1b4n0q5v",
    "too short checksum": "li1dgmt3",
    "invalid character in checksum": "de1lg7wt\xff",
    "checksum calculated with uppercase form of hrp": "A1G7SGD8",
    "empty hrp, checksum only": "10a06t8",
    "empty hrp, uppercase data": "1qzzfhee",
    "mixed case": "A12uEL5L",
    "one flipped character": "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxx",
}


@pytest.mark.parametrize("text", VALID)
def test_bip173_valid_strings_round_trip(text: str) -> None:
    hrp, words = decode_words(text)
    assert hrp == text[: text.rfind("1")]  # as written: the caller checks the case it wants
    assert encode_words(hrp, words) == text.lower()


@pytest.mark.parametrize("text", list(INVALID.values()), ids=list(INVALID))
def test_bip173_invalid_strings_are_refused(text: str) -> None:
    with pytest.raises(KeyFormatError):
        decode_words(text)


def test_length_limit_is_lifted_as_age_does() -> None:
    # Invalid in BIP-173 only for its 90-character limit, which the age spec lifts.
    text = (
        "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio"
        "1569pvx"
    )
    assert len(text) > 90
    assert decode_words(text)[0] == text[: text.rfind("1")]
    long = encode("age-secret-key-", bytes(range(256)))
    assert decode(long) == ("age-secret-key-", bytes(range(256)))


def test_bytes_of_a_bip173_vector() -> None:
    # The data part of this vector is the whole alphabet in order: 32 groups, 160 bits.
    hrp, data = decode("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")
    assert hrp == "abcdef"
    assert data == bytes.fromhex("00443214c74254b635cf84653a56d7c675be77df")


@pytest.mark.parametrize(
    ("words", "reason"),
    [([0, 1], "non-zero padding"), ([0], "unused 5-bit group"), ([0, 0, 0], "unused 5-bit group")],
)
def test_bytes_decode_is_strict_about_padding(words: list[int], reason: str) -> None:
    with pytest.raises(KeyFormatError, match=reason):
        decode(encode_words("age", words))


def test_mixed_case_hrp_refused_on_encode() -> None:
    with pytest.raises(KeyFormatError, match="mixes"):
        encode("Age", b"x")


@given(st.binary(max_size=80), st.sampled_from(["age", "age-secret-key-", "a", "x1y"]))
def test_bytes_round_trip(data: bytes, hrp: str) -> None:
    text = encode(hrp, data)
    assert decode(text) == (hrp, data)
    assert decode(text.upper()) == (hrp.upper(), data)
