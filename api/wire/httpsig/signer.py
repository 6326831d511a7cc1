"""The client side of the signature profile: :class:`RequestSigner`."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from api.errors import RequestAuthError
from api.wire.httpsig._fast_strict import sign_strict
from api.wire.httpsig.profile import (
    BODY_COMPONENTS,
    BODY_METHODS,
    COMPONENTS,
    LABEL,
    TAG,
    UNAUTHENTICATED,
    Ed25519Algorithm,
    Message,
)
from crypto import SigningKey


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key: SigningKey) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> SigningKey:
        if key_id != self._key.key_id:
            raise HTTPMessageSignaturesException(f"no private key for {key_id[:16]}")
        return self._key


class RequestSigner:
    """Signs outgoing requests with one member key.

    The general path: the package builds the signature base and parameters
    (``HTTPMessageSigner.prepare``, the API it offers for signers that hold the key themselves);
    the key signs the base, and the two signature fields are written under the label ``pht``.
    (``HTTPMessageSigner.apply`` would re-derive the whole base to check it again, doubling the
    cost of signing for nothing: the message is not touched in between.)

    PHT's own requests take the fast path first (:mod:`api.wire.httpsig._fast_strict`), which
    writes the same headers directly; ``strict_path=False`` turns it off.
    """

    def __init__(self, key: SigningKey, *, strict_path: bool = True) -> None:
        self.key = key
        self._strict_path = strict_path
        self._signer = HTTPMessageSigner(
            signature_algorithm=Ed25519Algorithm, key_resolver=_OneKey(key)
        )

    def sign(
        self,
        message: Message,
        *,
        body: bytes | None,
        created: int,
        nonce: str,
        digest_sha256: str | None = None,
    ) -> None:
        """Add ``Content-Digest`` (for a body), ``Signature-Input`` and ``Signature`` in place.

        ``body`` must be the exact bytes sent (``None`` for a bodiless request; POST and PUT
        always get a digest, of ``b""`` if need be). For a body streamed from a file, pass
        ``body=None`` and its hex ``digest_sha256`` instead. Raises :class:`RequestAuthError`
        if the package cannot sign the message.
        """
        for name in ("Content-Digest", "Signature-Input", "Signature"):
            if name in message.headers:
                del message.headers[name]
        components: tuple[str, ...] = COMPONENTS
        if digest_sha256 is not None:
            encoded = base64.b64encode(bytes.fromhex(digest_sha256)).decode("ascii")
            message.headers["Content-Digest"] = f"sha-256=:{encoded}:"
            components, body = BODY_COMPONENTS, None
        elif body is None and (message.method or "").upper() in BODY_METHODS:
            body = b""
        if self._strict_path and sign_strict(
            self.key, message, body=body, digest_sha256=digest_sha256, created=created, nonce=nonce
        ):
            return
        try:
            prepared = self._signer.prepare(
                message,
                key_id=self.key.key_id,
                created=datetime.fromtimestamp(created, UTC),
                nonce=nonce,
                label=LABEL,
                tag=TAG,
                covered_component_ids=components,
                body=body,
                use_existing_digest=digest_sha256 is not None,
            )
        except HTTPMessageSignaturesException as exc:
            raise RequestAuthError(UNAUTHENTICATED, f"cannot sign request: {exc}") from exc
        signature = base64.b64encode(self.key.sign(prepared.signature_base)).decode("ascii")
        message.headers["Signature-Input"] = f"{LABEL}={prepared.signature_params}"
        message.headers["Signature"] = f"{LABEL}=:{signature}:"
