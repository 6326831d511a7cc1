"""Key generation, key files and domain-separated signatures."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from crypto import (
    BadSignatureError,
    InsecureKeyFileError,
    KeyFileError,
    KeyFormatError,
    PublicKey,
    Purpose,
    SigningKey,
    sign,
    verify,
)


def test_private_key_file_is_created_0600_and_round_trips(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "alice.key"
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        key.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).key_id == key.key_id


def test_refuses_to_overwrite_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    SigningKey.generate().save(path)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        SigningKey.generate().save(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_refuses_key_file_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    SigningKey.generate().save(path)
    path.chmod(mode)
    with pytest.raises(InsecureKeyFileError, match="chmod 600"):
        SigningKey.load(path)


def test_refuses_key_file_behind_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    SigningKey.generate().save(real)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(KeyFileError):
        SigningKey.load(link)


def test_passphrase_encrypted_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "k.key"
    key.save(path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert SigningKey.load(path, passphrase=b"correct horse").key_id == key.key_id
    with pytest.raises(KeyFormatError):
        SigningKey.load(path, passphrase=b"wrong")
    with pytest.raises(KeyFormatError):
        SigningKey.load(path)


def test_public_key_forms_and_key_id() -> None:
    key = SigningKey.generate()
    public = key.public
    assert public.key_id == hashlib.sha256(public.raw).hexdigest()
    assert PublicKey.from_text(public.b64()) == public
    assert PublicKey.from_text(public.pem().decode()) == public


@pytest.mark.parametrize(
    "text",
    ["", "AAAA", "not base64!", "A" * 40 + "==", "QUFB\n" * 10, "-----BEGIN PUBLIC KEY-----\nxx"],
)
def test_rejects_malformed_public_keys(text: str) -> None:
    with pytest.raises(KeyFormatError):
        PublicKey.from_text(text)


def test_signatures_are_domain_separated() -> None:
    key = SigningKey.generate()
    signature = sign(key, Purpose.EVENT, b"payload")
    verify(key.public, Purpose.EVENT, b"payload", signature)
    with pytest.raises(BadSignatureError):
        verify(key.public, Purpose.REQUEST, b"payload", signature)
    with pytest.raises(BadSignatureError):
        verify(key.public, Purpose.EVENT, b"payload!", signature)
    with pytest.raises(BadSignatureError):
        verify(SigningKey.generate().public, Purpose.EVENT, b"payload", signature)
    with pytest.raises(BadSignatureError, match="64 bytes"):
        verify(key.public, Purpose.EVENT, b"payload", signature[:-1])


# RFC 8032 section 7.1, TEST 1 and TEST 2: seed, public key, message, signature.
RFC8032_VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_VECTORS)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    # Signing runs in libsodium and key files in cryptography: both must agree with the RFC.
    key = SigningKey.from_seed(bytes.fromhex(seed))
    assert key.public.raw.hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    reloaded = SigningKey.from_pem(key.private_pem())
    assert reloaded.sign(bytes.fromhex(message)).hex() == signature
    key.public.verify(bytes.fromhex(signature), bytes.fromhex(message))
    with pytest.raises(BadSignatureError):
        key.public.verify(bytes.fromhex(signature), bytes.fromhex(message) + b"\0")
