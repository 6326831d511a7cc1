"""The server side of the signature profile: :class:`RequestVerifier`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from http_message_signatures import (
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from api.errors import RequestAuthError
from api.wire.httpsig._fast_strict import verify_strict
from api.wire.httpsig.profile import (
    BODY_COMPONENTS,
    BODY_METHODS,
    COMPONENTS,
    DEFAULT_SKEW,
    DEFAULT_WINDOW,
    NONCE,
    SIGNATURE_EXPIRED,
    TAG,
    UNAUTHENTICATED,
    UNKNOWN_KEY,
    Ed25519Algorithm,
    KeyLookup,
    ServerMessage,
    Verified,
)
from api.wire.httpsig.replay import ReplayCache
from crypto import KeyId, PublicKey


class RequestVerifier:
    """Verifies requests against the profile (:mod:`api.wire.httpsig.profile`).

    Two paths reach the same verdict. PHT's own requests take the fast path
    (:mod:`api.wire.httpsig._fast_strict`; ``strict_path=False`` turns it off); anything else
    (other parameter orders, several signatures, other digest algorithms) and every refusal go
    through the package's ``HTTPMessageVerifier`` (:meth:`_general`), so errors are always the
    package's.
    """

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        clock: Callable[[], float],
        window: int = DEFAULT_WINDOW,
        skew: int = DEFAULT_SKEW,
        not_before: int = 0,
        replay: ReplayCache | None = None,
        strict_path: bool = True,
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._window = window
        self._skew = skew
        self._not_before = not_before
        self._strict_path = strict_path
        self.replay = replay if replay is not None else ReplayCache()

    def verify(self, message: ServerMessage, body: bytes | None) -> Verified:
        """Return who signed ``message``; raise :class:`RequestAuthError` naming why not.

        The signature must follow the profile, verify under the current member key named by
        ``keyid``, be fresh, cover ``Content-Digest`` when the method carries a body, and not have
        been used before. The digest is checked against ``body``; pass ``None`` for a body the
        caller streams later, and check it against ``Verified.digest`` then.
        """
        now = self._clock()
        verified = None
        if self._strict_path:
            earliest = max(now - self._window, self._not_before)
            verified = verify_strict(
                message, body, self._lookup, earliest=earliest, latest=now + self._skew
            )
        if verified is None:
            verified = self._general(message, body, now)
        until = verified.created + self._window + self._skew + 1
        self.replay.remember(verified.key_id, verified.nonce, until=until, now=now)
        return verified

    def _general(self, message: ServerMessage, body: bytes | None, now: float) -> Verified:
        """The package's verifier; raises :class:`RequestAuthError` with the reason."""
        if not _has_signature(message.headers):
            raise RequestAuthError(
                UNAUTHENTICATED,
                "the request carries no HTTP message signature (Signature-Input and Signature "
                f"with tag {TAG!r})",
            )
        resolver = _MemberKeys(self._lookup)
        verifier = _Verifier(
            resolver, now=now, window=self._window, skew=self._skew, not_before=self._not_before
        )
        has_body = message.method in BODY_METHODS or bool(body)
        try:
            results = verifier.verify(
                message,
                max_age=None,
                expect_tag=TAG,
                require_components=BODY_COMPONENTS if has_body else COMPONENTS,
                body=body if has_body else None,
            )
        except _Stale as exc:
            raise RequestAuthError(SIGNATURE_EXPIRED, str(exc)) from exc
        except HTTPMessageSignaturesException as exc:
            if resolver.unknown is not None:
                raise RequestAuthError(
                    UNKNOWN_KEY,
                    f"key {str(resolver.unknown)[:64]} is not the key of a current member",
                ) from exc
            raise RequestAuthError(UNAUTHENTICATED, f"request signature refused: {exc}") from exc
        if len(results) != 1:
            raise RequestAuthError(
                UNAUTHENTICATED, f"expected one signature tagged {TAG!r}, found {len(results)}"
            )
        params = results[0].parameters
        nonce = params.get("nonce")
        if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
            raise RequestAuthError(
                UNAUTHENTICATED, "the signature needs a nonce of 16-64 characters [A-Za-z0-9_-]"
            )
        return Verified(
            key_id=KeyId(str(params["keyid"])),
            created=int(params["created"]),
            nonce=nonce,
            body=body or b"",
            digest=results[0].covered_components.get('"content-digest"'),
        )


class _Stale(InvalidSignature):
    pass


class _MemberKeys(HTTPSignatureKeyResolver):
    """Resolves keyids through the ledger's current membership, remembering what it found."""

    def __init__(self, lookup: KeyLookup) -> None:
        self._lookup = lookup
        self.unknown: str | None = None

    def resolve_public_key(self, key_id: str) -> PublicKey | None:
        key = self._lookup(KeyId(key_id)) if isinstance(key_id, str) else None
        if key is None:
            self.unknown = key_id
        return key


class _Verifier(HTTPMessageVerifier):
    """The package's verifier with the freshness rule on an injected clock."""

    def __init__(
        self,
        resolver: _MemberKeys,
        *,
        now: float,
        window: int,
        skew: int,
        not_before: int,
    ) -> None:
        super().__init__(signature_algorithm=Ed25519Algorithm, key_resolver=resolver)
        self._now = now
        self._window = window
        self._skew = skew
        self._not_before = not_before

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        params = sig_input.params
        created = params.get("created")
        if type(created) is not int:
            raise InvalidSignature('the signature needs an integer "created" parameter')
        if created > self._now + self._skew:
            raise _Stale(
                f"created {created} is {created - int(self._now)} s in the future; "
                "check the client's clock"
            )
        if created < self._now - self._window:
            raise _Stale(
                f"created {created} is {int(self._now) - created} s old; signatures are valid "
                f"for {self._window} s"
            )
        if created < self._not_before:
            raise _Stale("the signature predates this registry process; sign the request again")
        expires = params.get("expires")
        if expires is not None and (type(expires) is not int or expires < self._now):
            raise _Stale("the signature has expired")


def _has_signature(headers: Mapping[str, str]) -> bool:
    names = {name.lower() for name in headers}
    return "signature" in names and "signature-input" in names
