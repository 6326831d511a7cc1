"""Ed25519 keys, key ids, key files and domain-separated signatures (imports only cryptography)."""

from crypto.errors import (
    BadSignatureError,
    CryptoError,
    InsecureKeyFileError,
    KeyFileError,
    KeyFormatError,
)
from crypto.keys import KeyId, PublicKey, SigningKey, key_id_of, write_new_file
from crypto.signing import Purpose, domain_bytes, sign, verify

__all__ = [
    "BadSignatureError",
    "CryptoError",
    "InsecureKeyFileError",
    "KeyFileError",
    "KeyFormatError",
    "KeyId",
    "PublicKey",
    "Purpose",
    "SigningKey",
    "domain_bytes",
    "key_id_of",
    "sign",
    "verify",
    "write_new_file",
]
