"""C2SP checkpoints in signed notes: interop vectors, round trip, and forged or mangled notes."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest

from crypto import SigningKey
from ledger.checkpoint import (
    MAX_NOTE_SIZE,
    Checkpoint,
    CheckpointError,
    NoteVerifier,
    key_hash,
    open_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_checkpoint,
)
from ledger.errors import LedgerError

ORIGIN = "registry.example.org/pht"
ROOT = hashlib.sha256(b"some root").digest()
LOG_KEY = SigningKey.from_seed(bytes(range(32)))
OTHER_KEY = SigningKey.from_seed(bytes(range(1, 33)))
VERIFIER = NoteVerifier.for_key(ORIGIN, LOG_KEY.public)
CHECKPOINT = Checkpoint(origin=ORIGIN, size=1234, root=ROOT)

# golang.org/x/mod/sumdb/note documentation example (the reference implementation of the format).
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + (
        "\n\u2014 PeterNeumann "
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    ).encode()
)


def go_signing_key() -> SigningKey:
    encoded = GO_SIGNER.split("+", 4)[4]
    data = base64.b64decode(encoded)
    assert data[0] == 0x01
    return SigningKey.from_seed(data[1:])


def signed() -> bytes:
    return sign_checkpoint(CHECKPOINT, LOG_KEY)


def signature_line(note: bytes) -> bytes:
    return note[len(CHECKPOINT.body()) + 1 :]


# -- interoperability -----------------------------------------------------------------------------


def test_go_reference_note_is_reproduced_byte_for_byte() -> None:
    key = go_signing_key()
    assert verifier_key("PeterNeumann", key.public) == GO_VERIFIER
    assert sign_note(GO_TEXT, key, name="PeterNeumann") == GO_NOTE
    assert open_note(GO_NOTE, parse_verifier_key(GO_VERIFIER)) == GO_TEXT


@pytest.mark.parametrize(
    "text",
    [
        GO_VERIFIER,
        "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",  # '+' inside the base64
    ],
)
def test_published_verifier_keys_parse_and_re_encode(text: str) -> None:
    verifier = parse_verifier_key(text)
    assert verifier.text() == text
    assert verifier.key_hash.hex() == text.split("+")[1]


def test_key_hash_is_sha256_of_name_newline_type_and_key() -> None:
    digest = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + LOG_KEY.public.raw).digest()
    assert key_hash(ORIGIN, LOG_KEY.public) == digest[:4]


# -- round trip ------------------------------------------------------------------------------------


def test_checkpoint_round_trip() -> None:
    note = signed()
    assert note.startswith(f"{ORIGIN}\n1234\n{base64.b64encode(ROOT).decode()}\n\n".encode())
    assert note.endswith(b"\n")
    assert signature_line(note).startswith(f"\u2014 {ORIGIN} ".encode())
    assert verify_checkpoint(note, VERIFIER, origin=ORIGIN) == CHECKPOINT
    assert Checkpoint.parse_body(CHECKPOINT.body()) == CHECKPOINT


def test_verifier_key_round_trip() -> None:
    text = verifier_key(ORIGIN, LOG_KEY.public)
    assert parse_verifier_key(text) == VERIFIER
    assert VERIFIER.text() == text


@pytest.mark.parametrize(
    "origin", ["r\u00e9gistre.example/pht", "\u767b\u8bb0.example/\u65e5\u5fd7"]
)
def test_non_ascii_origin_round_trip(origin: str) -> None:
    checkpoint = Checkpoint(origin=origin, size=7, root=ROOT)
    verifier = NoteVerifier.for_key(origin, LOG_KEY.public)
    note = sign_checkpoint(checkpoint, LOG_KEY)
    assert verify_checkpoint(note, verifier, origin=origin) == checkpoint
    assert parse_verifier_key(verifier.text()) == verifier


@pytest.mark.parametrize("size", [0, 1, 2**63 - 1])
def test_boundary_sizes_round_trip(size: int) -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=size, root=ROOT)
    note = sign_checkpoint(checkpoint, LOG_KEY)
    assert verify_checkpoint(note, VERIFIER, origin=ORIGIN) == checkpoint


def test_unknown_signature_lines_are_ignored() -> None:
    note = signed()
    witness = sign_checkpoint(CHECKPOINT, OTHER_KEY, name="witness.example/w1")
    both = note + signature_line(witness)
    assert verify_checkpoint(both, VERIFIER, origin=ORIGIN) == CHECKPOINT
    reversed_order = CHECKPOINT.body() + b"\n" + signature_line(witness) + signature_line(note)
    assert verify_checkpoint(reversed_order, VERIFIER, origin=ORIGIN) == CHECKPOINT


# -- forged and mangled notes ---------------------------------------------------------------------


def _replace_body(note: bytes, old: bytes, new: bytes) -> bytes:
    body, _, rest = note.partition(b"\n\n")
    assert old in body
    return body.replace(old, new, 1) + b"\n\n" + rest


def _sig_bytes(note: bytes) -> bytes:
    return base64.b64decode(signature_line(note).rsplit(b" ", 1)[1])


def _with_sig_bytes(note: bytes, raw: bytes, name: str = ORIGIN) -> bytes:
    line = f"\u2014 {name} {base64.b64encode(raw).decode()}\n".encode()
    return CHECKPOINT.body() + b"\n" + line


ROOT_B64 = base64.b64encode(ROOT)

FORGERIES: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("signed_by_another_key", lambda n: sign_checkpoint(CHECKPOINT, OTHER_KEY)),
    (
        "another_key_claiming_the_log_key_hash",
        lambda n: _with_sig_bytes(n, VERIFIER.key_hash + OTHER_KEY.sign(CHECKPOINT.body()), ORIGIN),
    ),
    (
        "another_origin",
        lambda n: sign_checkpoint(
            Checkpoint(origin="evil.example/log", size=1234, root=ROOT), LOG_KEY, name=ORIGIN
        ),
    ),
    ("edited_size", lambda n: _replace_body(n, b"\n1234\n", b"\n1235\n")),
    ("edited_size_to_smaller", lambda n: _replace_body(n, b"\n1234\n", b"\n123\n")),
    ("edited_root", lambda n: _replace_body(n, ROOT_B64, base64.b64encode(bytes(32)))),
    ("edited_origin", lambda n: _replace_body(n, ORIGIN.encode(), b"registry.example.org/phx")),
    ("missing_signature", lambda n: CHECKPOINT.body()),
    ("blank_line_but_no_signature", lambda n: CHECKPOINT.body() + b"\n"),
    ("signature_line_without_blank_line", lambda n: CHECKPOINT.body() + signature_line(n)),
    ("trailing_junk", lambda n: n + b"junk"),
    ("trailing_junk_line", lambda n: n + b"junk\n"),
    ("trailing_blank_line_and_junk", lambda n: n + b"\njunk\n"),
    ("trailing_newline", lambda n: n + b"\n"),
    ("missing_final_newline", lambda n: n[:-1]),
    ("leading_junk_line", lambda n: b"junk\n" + n),
    ("extension_line", lambda n: sign_note(CHECKPOINT.body() + b"ext\n", LOG_KEY, name=ORIGIN)),
    ("not_utf8", lambda n: n.replace(b"\xe2\x80\x94", b"\xe2\x80")),
    ("latin1_em_dash", lambda n: n.replace("\u2014".encode(), b"\x97")),
    ("hyphen_instead_of_em_dash", lambda n: n.replace("\u2014".encode(), b"-")),
    ("carriage_return_line_ends", lambda n: n.replace(b"\n", b"\r\n")),
    ("nul_byte", lambda n: n.replace(b"\n\n", b"\n\x00\n")),
    ("key_hash_mismatch", lambda n: _with_sig_bytes(n, b"\x00\x00\x00\x00" + _sig_bytes(n)[4:])),
    ("truncated_signature", lambda n: _with_sig_bytes(n, _sig_bytes(n)[:-1])),
    ("extended_signature", lambda n: _with_sig_bytes(n, _sig_bytes(n) + b"\x00")),
    ("flipped_signature_bit", lambda n: _with_sig_bytes(n, _flip_last(_sig_bytes(n)))),
    ("key_hash_only", lambda n: _with_sig_bytes(n, _sig_bytes(n)[:4])),
    ("non_canonical_base64", lambda n: n.replace(b"=\n", b"\n")),
    ("name_with_space", lambda n: n.replace(f"\u2014 {ORIGIN} ".encode(), b"\xe2\x80\x94 a b ")),
    ("double_space", lambda n: n.replace(f"{ORIGIN} ".encode(), f"{ORIGIN}  ".encode())),
    ("bad_signature_line_among_good", lambda n: n + b"\xe2\x80\x94 oops\n"),
    ("same_key_second_line_bad", lambda n: n + _flip_line(signature_line(n))),
    ("size_with_leading_zero", lambda n: _resign(n, b"\n1234\n", b"\n01234\n")),
    ("size_with_plus_sign", lambda n: _resign(n, b"\n1234\n", b"\n+1234\n")),
    ("size_unicode_digits", lambda n: _resign(n, b"\n1234\n", "\n\u0661234\n".encode())),
    ("size_beyond_2_63", lambda n: _resign(n, b"\n1234\n", b"\n9223372036854775808\n")),
    ("negative_size", lambda n: _resign(n, b"\n1234\n", b"\n-1\n")),
    ("short_root", lambda n: _resign(n, ROOT_B64, base64.b64encode(ROOT[:31]))),
    ("root_base64_without_padding", lambda n: _resign(n, ROOT_B64, ROOT_B64.rstrip(b"="))),
    ("root_urlsafe_base64", lambda n: _resign(n, ROOT_B64, base64.urlsafe_b64encode(ROOT))),
    ("empty_origin", lambda n: _resign(n, ORIGIN.encode(), b"")),
    ("oversized_note", lambda n: n + _big_witness_line(MAX_NOTE_SIZE)),
    ("too_many_signatures", lambda n: n + _witness_line() * 100),
]


def _flip_last(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def _flip_line(line: bytes) -> bytes:
    name, encoded = line.rsplit(b" ", 1)
    raw = _flip_last(base64.b64decode(encoded))
    return name + b" " + base64.b64encode(raw) + b"\n"


def _resign(note: bytes, old: bytes, new: bytes) -> bytes:
    """A body edited and then validly signed by the log key: only the body checks can catch it."""
    body = note.partition(b"\n\n")[0] + b"\n"
    assert old in body
    return sign_note(body.replace(old, new, 1), LOG_KEY, name=ORIGIN)


def _big_witness_line(size: int) -> bytes:
    return "\u2014 witness.example/big ".encode() + base64.b64encode(bytes(size)) + b"\n"


def _witness_line() -> bytes:
    return signature_line(sign_checkpoint(CHECKPOINT, OTHER_KEY, name="witness.example/w"))


@pytest.mark.parametrize(("name", "forge"), FORGERIES, ids=[name for name, _ in FORGERIES])
def test_rejects_forged_or_mangled_note(name: str, forge: Callable[[bytes], bytes]) -> None:
    note = forge(signed())
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, VERIFIER, origin=ORIGIN)


def test_rejects_oversized_note_before_parsing_it() -> None:
    with pytest.raises(CheckpointError, match="at most 16384 bytes"):
        verify_checkpoint(signed() + _big_witness_line(MAX_NOTE_SIZE), VERIFIER, origin=ORIGIN)


def test_accepts_up_to_100_signature_lines_and_no_more() -> None:
    note = signed() + _witness_line() * 99
    assert verify_checkpoint(note, VERIFIER, origin=ORIGIN) == CHECKPOINT
    with pytest.raises(CheckpointError, match="at most 100 signatures"):
        verify_checkpoint(note + _witness_line(), VERIFIER, origin=ORIGIN)


def test_rejects_checkpoint_for_another_expected_origin() -> None:
    with pytest.raises(CheckpointError, match="origin"):
        verify_checkpoint(signed(), VERIFIER, origin="registry.example.org/other")


def test_rejects_note_from_verifier_with_other_name_same_key() -> None:
    other_name = NoteVerifier.for_key("mirror.example/pht", LOG_KEY.public)
    with pytest.raises(CheckpointError, match="no signature"):
        verify_checkpoint(signed(), other_name, origin=ORIGIN)


def test_rejects_non_bytes_note() -> None:
    with pytest.raises(CheckpointError):
        verify_checkpoint(signed().decode(), VERIFIER, origin=ORIGIN)  # type: ignore[arg-type]


# -- verifier keys and values ----------------------------------------------------------------------


def _vkey(raw_after_type: bytes, type_byte: int = 1, name: str = ORIGIN) -> str:
    data = base64.b64encode(bytes([type_byte]) + raw_after_type).decode()
    return f"{name}+{key_hash(ORIGIN, LOG_KEY.public).hex()}+{data}"


GOOD_VKEY = verifier_key(ORIGIN, LOG_KEY.public)

BAD_VERIFIER_KEYS = [
    ("key_hash_mismatch", GOOD_VKEY.replace(VERIFIER.key_hash.hex(), "00000000")),
    ("key_hash_of_another_name", _vkey(LOG_KEY.public.raw, name="other.example")),
    (
        "uppercase_key_hash",
        GOOD_VKEY.replace(VERIFIER.key_hash.hex(), VERIFIER.key_hash.hex().upper()),
    ),
    ("short_key_hash", GOOD_VKEY.replace(VERIFIER.key_hash.hex(), VERIFIER.key_hash.hex()[:7])),
    ("ecdsa_type_byte", _vkey(LOG_KEY.public.raw, type_byte=2)),
    ("short_key", _vkey(LOG_KEY.public.raw[:31])),
    ("long_key", _vkey(LOG_KEY.public.raw + b"\x00")),
    ("missing_parts", f"{ORIGIN}+{VERIFIER.key_hash.hex()}"),
    ("empty_name", GOOD_VKEY.removeprefix(ORIGIN)),
    ("name_with_space", "a b" + GOOD_VKEY.removeprefix(ORIGIN)),
    ("non_canonical_base64", GOOD_VKEY.rstrip("=") if GOOD_VKEY.endswith("=") else GOOD_VKEY + "="),
    ("trailing_newline", GOOD_VKEY + "\n"),
]


@pytest.mark.parametrize(("name", "text"), BAD_VERIFIER_KEYS, ids=[n for n, _ in BAD_VERIFIER_KEYS])
def test_rejects_malformed_verifier_key(name: str, text: str) -> None:
    with pytest.raises(CheckpointError):
        parse_verifier_key(text)


def test_note_verifier_refuses_incoherent_key_hash() -> None:
    with pytest.raises(CheckpointError, match="key hash"):
        NoteVerifier(name=ORIGIN, key_hash=b"\x00\x00\x00\x00", public_key=LOG_KEY.public)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("empty_origin", {"origin": "", "size": 1, "root": ROOT}),
        ("origin_with_newline", {"origin": "a\nb", "size": 1, "root": ROOT}),
        ("origin_with_plus", {"origin": "a+b", "size": 1, "root": ROOT}),
        ("origin_with_unicode_space", {"origin": "a\u2003b", "size": 1, "root": ROOT}),
        ("origin_with_lone_surrogate", {"origin": "a\ud800b", "size": 1, "root": ROOT}),
        ("negative_size", {"origin": ORIGIN, "size": -1, "root": ROOT}),
        ("size_beyond_2_63", {"origin": ORIGIN, "size": 2**63, "root": ROOT}),
        ("boolean_size", {"origin": ORIGIN, "size": True, "root": ROOT}),
        ("short_root", {"origin": ORIGIN, "size": 1, "root": ROOT[:31]}),
        ("text_root", {"origin": ORIGIN, "size": 1, "root": ROOT.hex()}),
    ],
)
def test_checkpoint_refuses_invalid_values(name: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("no_final_newline", b"origin\n1\n" + ROOT_B64),
        ("empty_text", b""),
        ("carriage_return", b"origin\r\n1\r\n" + ROOT_B64 + b"\r\n"),
        ("not_utf8", b"origin\xff\n1\n" + ROOT_B64 + b"\n"),
        ("oversized", b"x" * MAX_NOTE_SIZE + b"\n"),
    ],
)
def test_sign_note_refuses_text_that_is_not_a_note(name: str, text: bytes) -> None:
    with pytest.raises(CheckpointError):
        sign_note(text, LOG_KEY, name=ORIGIN)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("two_lines", b"origin\n1\n"),
        ("blank_line_inside", f"{ORIGIN}\n\n1\n".encode() + ROOT_B64 + b"\n"),
        ("four_lines", CHECKPOINT.body() + b"more\n"),
    ],
)
def test_signed_note_that_is_not_a_checkpoint_is_rejected(name: str, text: bytes) -> None:
    note = sign_note(text, LOG_KEY, name=ORIGIN)
    assert open_note(note, VERIFIER) == text
    with pytest.raises(CheckpointError):
        verify_checkpoint(note, VERIFIER, origin=ORIGIN)


def test_checkpoint_errors_are_ledger_errors() -> None:
    assert issubclass(CheckpointError, LedgerError)
