"""Errors raised by :mod:`crypto`.

::

    CryptoError
    ├── KeyFormatError        bytes/PEM/base64 that are not an Ed25519 key of the expected kind
    ├── KeyFileError          a key file that cannot be created, read or trusted
    │   └── InsecureKeyFileError   a private key readable by group or other
    └── BadSignatureError     a signature that does not verify (or is malformed)

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
