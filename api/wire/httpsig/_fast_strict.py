"""The fast path of the signature profile: PHT's own requests, signed and verified by one format.

PHT's client writes one strict form (an upper-case method, a target URI in the grammar below, a
plain nonce, the parameters in the package's order, a ``sha-256`` digest). Its RFC 9421 signature
base is one format string, defined here once for both sides; the package builds and parses the
same base generally, several times slower.

- ``sign_strict`` must write exactly the headers ``RequestSigner``'s general path
  (``HTTPMessageSigner.prepare``) writes. Pinned by
  ``tests/api/test_httpsig.py::test_direct_signing_writes_exactly_what_the_package_writes``.
- ``verify_strict`` must reach the verdict of ``RequestVerifier._general`` (the package's
  ``HTTPMessageVerifier``) whenever it accepts. Pinned by
  ``tests/api/test_httpsig.py::test_strict_path_agrees_with_the_package`` (genuine and tampered
  requests through both).

Both decline (False, None) anything outside the strict form, and the verifier every refusal, so
the package decides those and its errors are the ones reported. Justified by
``bench/fast_paths_bench.py`` (each path against the package in the same run): signing 5.4x and
verifying 3.8x as fast; every append the registry takes is verified (``bench/api_bench.py``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping

from api.wire.httpsig.profile import (
    BODY_METHODS,
    LABEL,
    TAG,
    KeyLookup,
    Message,
    ServerMessage,
    Verified,
)
from crypto import BadSignatureError, KeyId, SigningKey

_METHOD = re.compile(r"[A-Z]{1,16}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_FIELDS = frozenset({"signature-input", "signature", "content-digest"})
# What sign_strict writes: the package's serialization, in our parameter order.
_INPUT = re.compile(
    r'pht=\(("@method" "@target-uri"(?: "content-digest")?)\)'
    r";created=([1-9][0-9]{0,11});keyid=\"([0-9a-f]{64})\";alg=\"ed25519\""
    r';nonce="([A-Za-z0-9_-]{16,64})";tag="pht/v1/request"'
)
_SIGNATURE = re.compile(r"pht=:([A-Za-z0-9+/]{86}==):")
_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")
# An absolute http(s) URL in RFC 3986 syntax (the package's grammar, minus userinfo, IPv6 and
# fragments), with a non-empty path: the package resolves @target-uri to exactly this text.
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
STRICT_URL = re.compile(
    rf"https?://[A-Za-z0-9.-]+(?::[0-9]{{1,5}})?(?:/{_PCHAR}*)+(?:\?(?:{_PCHAR}|[/?])*)?"
)


def signature_base(method: str, url: str, digest: str | None, params: str) -> bytes:
    """The RFC 9421 signature base of a strict-form request (what both sides sign and verify)."""
    digest_line = f'"content-digest": {digest}\n' if digest else ""
    return (
        f'"@method": {method}\n"@target-uri": {url}\n{digest_line}"@signature-params": {params}'
    ).encode("ascii")


def sign_strict(
    key: SigningKey,
    message: Message,
    *,
    body: bytes | None,
    digest_sha256: str | None,
    created: int,
    nonce: str,
) -> bool:
    """Sign ``message`` in the strict form, in place; False (nothing written) for any other."""
    method, url = message.method or "", message.url or ""
    if not (
        _METHOD.fullmatch(method)
        and STRICT_URL.fullmatch(url)
        and _NONCE.fullmatch(nonce)
        and 0 < created < 10**12
    ):
        return False
    if body is not None:
        encoded = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        message.headers["Content-Digest"] = f"sha-256=:{encoded}:"
    digest = message.headers.get("Content-Digest") if body is not None or digest_sha256 else None
    covered = (
        '("@method" "@target-uri" "content-digest")' if digest else '("@method" "@target-uri")'
    )
    params = (
        f'{covered};created={created};keyid="{key.key_id}";alg="ed25519";'
        f'nonce="{nonce}";tag="{TAG}"'
    )
    signature = base64.b64encode(key.sign(signature_base(method, url, digest, params)))
    message.headers["Signature-Input"] = f"{LABEL}={params}"
    message.headers["Signature"] = f"{LABEL}=:{signature.decode('ascii')}:"
    return True


def verify_strict(
    message: ServerMessage,
    body: bytes | None,
    lookup: KeyLookup,
    *,
    earliest: float,
    latest: float,
) -> Verified | None:
    """Who signed ``message``, if it is in the strict form, ``created`` lies in
    ``[earliest, latest]`` and the signature verifies; None for anything else."""
    fields = _fields(message.headers)
    if fields is None:
        return None
    params = _INPUT.fullmatch(fields.get("signature-input", ""))
    signature = _SIGNATURE.fullmatch(fields.get("signature", ""))
    if params is None or signature is None:
        return None
    covered, created_text, key_id, nonce = params.groups()
    created = int(created_text)
    url = message.url
    if not earliest <= created <= latest or not STRICT_URL.fullmatch(url):
        return None
    digest = fields.get("content-digest")
    if covered.endswith('"content-digest"'):
        match = _DIGEST.fullmatch(digest or "")
        if match is None or digest is None:
            return None
        if body is not None and hashlib.sha256(body).digest() != base64.b64decode(match[1]):
            return None
    elif message.method in BODY_METHODS or body:
        return None
    else:
        digest = None
    key = lookup(KeyId(key_id))
    if key is None:
        return None
    base = signature_base(message.method, url, digest, fields["signature-input"][4:])
    try:
        key.verify(base64.b64decode(signature[1]), base)
    except BadSignatureError:
        return None
    return Verified(
        key_id=KeyId(key_id), created=created, nonce=nonce, body=body or b"", digest=digest
    )


def _fields(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The signature fields by lower-case name; None if one is repeated (the package decides)."""
    fields: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower().replace("_", "-")
        if lower in _FIELDS:
            if lower in fields:
                return None
            fields[lower] = value.strip(" \t")
    return fields
