"""Errors raised by :mod:`crypto`.

::

    CryptoError
    ├── KeyFormatError        bytes/PEM/base64/Bech32 that are not a key of the expected kind
    ├── KeyFileError          a key file that cannot be created, read or trusted
    │   └── InsecureKeyFileError   a private key readable by group or other
    ├── BadSignatureError     a signature that does not verify (or is malformed)
    └── DecryptionError       an age file that cannot be decrypted: malformed, tampered with,
        │                     truncated, reordered, with trailing data
        └── NoIdentityMatchError   well formed, but none of our identities is a recipient

Foreign exceptions from ``cryptography`` are translated here with ``from exc``.
"""


class CryptoError(Exception):
    """Root of every error raised by the crypto package."""


class KeyFormatError(CryptoError):
    """The input is not a key of the expected kind or encoding."""


class KeyFileError(CryptoError):
    """A key file could not be created, read or trusted."""


class InsecureKeyFileError(KeyFileError):
    """A private key file is readable or writable by group or other."""


class BadSignatureError(CryptoError):
    """A signature did not verify against the given key and message."""


class DecryptionError(CryptoError):
    """An age file did not decrypt. Any plaintext already written for it must be discarded."""


class NoIdentityMatchError(DecryptionError):
    """The age header is well formed but none of the given identities can unwrap its file key."""
