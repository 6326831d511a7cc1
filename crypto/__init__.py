"""Ed25519 keys, key ids, key files and domain-separated signatures; age (X25519) encryption.

Imports only ``cryptography``.
"""

from crypto.age import (
    AgeIdentity,
    AgeRecipient,
    decrypt_bytes,
    decrypt_file,
    decrypt_stream,
    encrypt_bytes,
    encrypt_file,
    encrypt_stream,
    load_identity,
    save_identity,
)
from crypto.errors import (
    BadSignatureError,
    CryptoError,
    DecryptionError,
    InsecureKeyFileError,
    KeyFileError,
    KeyFormatError,
    NoIdentityMatchError,
)
from crypto.keys import KeyId, PublicKey, SigningKey, key_id_of, write_new_file
from crypto.signing import Purpose, domain_bytes, sign, verify

__all__ = [
    "AgeIdentity",
    "AgeRecipient",
    "BadSignatureError",
    "CryptoError",
    "DecryptionError",
    "InsecureKeyFileError",
    "KeyFileError",
    "KeyFormatError",
    "KeyId",
    "NoIdentityMatchError",
    "PublicKey",
    "Purpose",
    "SigningKey",
    "decrypt_bytes",
    "decrypt_file",
    "decrypt_stream",
    "domain_bytes",
    "encrypt_bytes",
    "encrypt_file",
    "encrypt_stream",
    "key_id_of",
    "load_identity",
    "save_identity",
    "sign",
    "verify",
    "write_new_file",
]
