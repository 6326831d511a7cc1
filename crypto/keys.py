"""Ed25519 signing keys, public keys, key ids and key files.

Invariants:
- A public key travels as the base64 of its 32 raw bytes (DESIGN 2) or as a PEM file.
- A key id is the lowercase hex SHA-256 of the 32 raw public key bytes. It is a lookup hint only.
- Private key files are PKCS#8 PEM, created with mode 0600 atomically (``O_CREAT | O_EXCL`` with the
  mode given to ``open``, so there is no window in which another user could read them), and refused
  on load when group or other may read them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path
from typing import NewType

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crypto.errors import (
    BadSignatureError,
    InsecureKeyFileError,
    KeyFileError,
    KeyFormatError,
)

KeyId = NewType("KeyId", str)

RAW_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def key_id_of(raw_public: bytes) -> KeyId:
    """The key id of 32 raw Ed25519 public key bytes."""
    if len(raw_public) != RAW_KEY_SIZE:
        raise KeyFormatError(f"expected {RAW_KEY_SIZE} raw key bytes, found {len(raw_public)}")
    return KeyId(hashlib.sha256(raw_public).hexdigest())


class PublicKey:
    """An Ed25519 public key; compares and hashes by its raw bytes."""

    __slots__ = ("_key", "_verifier", "key_id", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != RAW_KEY_SIZE:
            raise KeyFormatError(f"expected {RAW_KEY_SIZE} raw public key bytes, found {len(raw)}")
        try:
            self._key = Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise KeyFormatError(f"not an Ed25519 public key: {exc}") from exc
        self._verifier = nacl.signing.VerifyKey(bytes(raw))
        self.raw: bytes = bytes(raw)
        self.key_id: KeyId = key_id_of(self.raw)

    @classmethod
    def from_b64(cls, text: str) -> PublicKey:
        """Parse the base64 of 32 raw bytes (the form used in events)."""
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
            raise KeyFormatError(f"public key is not valid base64: {text[:60]!r}") from exc
        if base64.b64encode(raw).decode("ascii") != text:
            raise KeyFormatError("public key base64 is not in canonical form")
        return cls(raw)

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError(f"expected an Ed25519 public key, found {type(key).__name__}")
        return cls(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        """Accept either a PEM document or the base64 of the raw bytes."""
        stripped = text.strip()
        if stripped.startswith("-----BEGIN"):
            return cls.from_pem(stripped.encode("ascii"))
        return cls.from_b64(stripped)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PublicKey:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read public key {os.fspath(path)}: {exc}") from exc
        return cls.from_text(text)

    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    def pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> None:
        """Verify ``signature`` over ``message``; raise :class:`BadSignatureError` otherwise.

        Verification runs in libsodium (PyNaCl), which releases the GIL: the registry's writer
        threads and request handlers verify in parallel on every core, where ``cryptography``'s
        verify holds the GIL (measured: 2 threads no faster than 1). Keys and PEM files stay with
        ``cryptography``.
        """
        if len(signature) != SIGNATURE_SIZE:
            raise BadSignatureError(
                f"signature by {self.key_id[:16]} must be {SIGNATURE_SIZE} bytes, "
                f"found {len(signature)}"
            )
        try:
            self._verifier.verify(message, signature)
        except nacl.exceptions.BadSignatureError as exc:
            raise BadSignatureError(f"signature does not verify for {self.key_id[:16]}") from exc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.key_id[:16]})"


class SigningKey:
    """An Ed25519 private key. Never printed, never compared.

    ``cryptography`` holds the key for PEM files; signing runs in libsodium, which releases the
    GIL (the registry signs a checkpoint per commit while request threads work). Ed25519 signing
    is deterministic (RFC 8032), so both libraries make the very same signature.
    """

    __slots__ = ("_key", "_signer", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._signer = nacl.signing.SigningKey(
            key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public = PublicKey(raw)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """A key from 32 seed bytes (deterministic keys for tests and examples)."""
        if len(seed) != RAW_KEY_SIZE:
            raise KeyFormatError(f"expected a {RAW_KEY_SIZE}-byte seed, found {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def key_id(self) -> KeyId:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        return self._signer.sign(message).signature

    def private_pem(self, passphrase: bytes | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption
        if passphrase:
            encryption = serialization.BestAvailableEncryption(passphrase)
        else:
            encryption = serialization.NoEncryption()
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=passphrase or None)
        except TypeError as exc:
            # cryptography raises TypeError for "encrypted but no password" and the reverse.
            raise KeyFormatError(f"private key passphrase mismatch: {exc}") from exc
        except ValueError as exc:
            raise KeyFormatError(f"unusable PEM private key (or wrong passphrase): {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError(f"expected an Ed25519 private key, found {type(key).__name__}")
        return cls(key)

    def save(self, path: str | os.PathLike[str], passphrase: bytes | None = None) -> None:
        """Write the private key to a new file with mode 0600; never overwrite."""
        write_new_file(path, self.private_pem(passphrase), mode=0o600)

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: bytes | None = None) -> SigningKey:
        """Load a private key, refusing a file that group or other may access; a public key or
        an age file given instead is named as such (:class:`KeyFormatError`), never met with
        advice to chmod it."""
        try:
            data = read_private_file(path, what="private key")
        except InsecureKeyFileError:
            mistaken = _not_a_signing_key(path, None)
            if mistaken is not None:
                raise KeyFormatError(mistaken) from None
            raise
        mistaken = _not_a_signing_key(path, data)
        if mistaken is not None:
            raise KeyFormatError(mistaken)
        return cls.from_pem(data, passphrase)

    def __repr__(self) -> str:
        return f"SigningKey({self.key_id[:16]})"


MAX_PRIVATE_FILE_SIZE = 1 << 16


def _not_a_signing_key(path: str | os.PathLike[str], data: bytes | None) -> str | None:
    """What ``path`` holds when it is a key file of another kind (the public key, the age
    identity or recipient ``pht keys new`` writes beside the signing key), with the fix; None
    when it looks like a private key (or cannot be read: the caller's error stands)."""
    if data is None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_PRIVATE_FILE_SIZE)
        except OSError:
            return None
    name = os.fspath(path)
    if b"-----BEGIN PUBLIC KEY-----" in data:
        what = "a public key"
    elif b"AGE-SECRET-KEY-1" in data:
        what = "an age identity (it decrypts results), not a signing key"
    elif data.lstrip().startswith(b"age1"):
        what = "an age recipient (a public encryption key), not a signing key"
    else:
        return None
    stem = Path(name).name.split(".", 1)[0]
    guess = Path(name).with_name(f"{stem}.key")
    fix = f"pass {guess}" if guess.is_file() else "pass your private key NAME.key"
    return f"{name} is {what}; {fix} (the private signing key `pht keys new NAME` wrote)"


def read_private_file(path: str | os.PathLike[str], *, what: str) -> bytes:
    """The bytes of a small secret file, refusing symlinks, non-regular files and files that
    group or other may access (:class:`InsecureKeyFileError`, with the chmod that fixes it)."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyFileError(f"cannot open {what} {name}: {exc.strerror}") from exc
    try:
        status = os.fstat(fd)
        if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureKeyFileError(
                f"{what} {name} has mode {stat.S_IMODE(status.st_mode):04o}; expected 0600 "
                f"(run: chmod 600 {name})"
            )
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_PRIVATE_FILE_SIZE:
            raise KeyFileError(f"{what} {name} is not a small regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_PRIVATE_FILE_SIZE + 1)
    finally:
        os.close(fd)


def write_new_file(path: str | os.PathLike[str], data: bytes, *, mode: int) -> None:
    """Create ``path`` with ``mode`` (exclusive, no race), write, fsync; refuse to overwrite."""
    path = os.fspath(path)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, mode)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite it") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widen beyond `mode`
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
