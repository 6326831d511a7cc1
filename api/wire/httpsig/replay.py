"""The replay memory of the signature profile: a ``(keyid, nonce)`` is accepted once."""

from __future__ import annotations

import heapq
import threading
from typing import Protocol

from api.errors import RequestAuthError
from api.wire.httpsig.profile import REQUEST_REPLAYED


class SharedNonces(Protocol):
    """Nonces remembered by every process serving one ledger
    (:class:`ledger.store.postgres.nonces.Nonces`)."""

    def first_use(self, key_id: str, nonce: str, *, until: float, now: float) -> bool: ...


class ReplayCache:
    """``(keyid, nonce)`` pairs seen within the freshness window; refuses a second use.

    ``shared``: also remembered where the other replicas of a shared ledger look.

    Bounded: entries leave when their ``created`` falls out of the window, and a cache holding
    ``capacity`` live entries refuses new requests (the registry is then overloaded far beyond
    what it can append anyway) rather than forgetting a nonce early. Thread-safe.
    """

    def __init__(self, *, capacity: int = 1_000_000, shared: SharedNonces | None = None) -> None:
        self._capacity = capacity
        self._shared = shared
        self._seen: dict[tuple[str, str], float] = {}
        self._expiry: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, key_id: str, nonce: str, *, until: float, now: float) -> None:
        """Record a fresh use; raise :class:`RequestAuthError` (``request-replayed``) on reuse.

        The nonce is taken here first, then asked of the shared store outside the lock: a
        database round trip per request must not queue every other request of the process
        behind it (a second use arriving meanwhile finds the nonce taken here)."""
        item = (key_id, nonce)
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                _, old = heapq.heappop(self._expiry)
                self._seen.pop(old, None)
            if item in self._seen:
                raise RequestAuthError(
                    REQUEST_REPLAYED,
                    f"nonce {nonce[:32]} of key {key_id[:16]} was already used; "
                    "sign every request afresh",
                )
            if len(self._seen) >= self._capacity:
                raise RequestAuthError(
                    REQUEST_REPLAYED, "too many recent requests to remember; try again shortly"
                )
            self._seen[item] = until
            heapq.heappush(self._expiry, (until, item))
        if self._shared is None:
            return
        try:
            first = self._shared.first_use(key_id, nonce, until=until, now=now)
        except BaseException:
            with self._lock:  # not remembered anywhere: the request was not answered
                self._seen.pop(item, None)
            raise
        if not first:
            raise RequestAuthError(
                REQUEST_REPLAYED,
                f"nonce {nonce[:32]} of key {key_id[:16]} was already used at another "
                "replica; sign every request afresh",
            )
