"""Is the URL in a site config a PHT registry, what does it pin, and does it know this site?

Used by ``siteclient init`` (to fetch the pins an operator confirms), ``siteclient check-config``
and ``siteclient follow`` (to say, on a first start that fails, whether nothing answers or
something that is not a PHT registry does).

- :func:`probe_registry`: the public ``GET /healthz`` and ``GET /v1/checkpoint``; a registry
  answers both with what the protocol says (a size; a checkpoint note naming its origin).
- :func:`fetch_pins`: the genesis entry (entry 0, a signed GET: only members may read the
  ledger) names the registry's log key; its entry hash is the genesis pin. The public checkpoint
  must verify under that key, so what is shown is what the registry signs with.
- :func:`replay`: the whole ledger, verified under the pins, for the current membership.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.client.ledgerview import catch_up
from api.client.registry import Client
from api.client.transport import RetryPolicy
from api.errors import ApiError, ProblemError, ProtocolError, TransportError
from crypto import SigningKey
from ledger.checkpoint import Checkpoint, parse_verifier_key, unverified_size, verify_checkpoint
from ledger.errors import LedgerError, QuorumError
from ledger.membership import Consortium
from ledger.trust import Pins, Trusted, TrustedLog
from ledger.view import View
from siteclient.errors import RegistryError

FIX = "check `registry` in the site config"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryFacts:
    """What a registry says about itself in public: its ledger's origin, size and checkpoint."""

    url: str
    origin: str
    size: int
    note: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedPins:
    """The trust anchors as the registry serves them (to be confirmed by the operator)."""

    name: str  # the consortium's name
    origin: str
    log_key: str
    genesis: str


def client_for(url: str, key: SigningKey | None = None) -> Client:
    """A client that gives up within about 2 s: these are interactive checks. (Not sooner: a
    request signed in the second a registry started is refused once, ``signature-expired``.)"""
    return Client(url, key, timeout=10.0, retry=RetryPolicy(attempts=4, backoff=0.3))


def probe_registry(url: str) -> RegistryFacts:
    """The registry's public facts; raise :class:`RegistryError` saying whether nothing answers
    at ``url`` or something that is not a PHT registry does."""
    try:
        client = client_for(url)
    except ApiError as exc:  # not an http(s) URL
        raise RegistryError(f"{exc}; {FIX}") from exc
    with client:
        try:
            size = client.health()
            note = client.checkpoint()
            body = note.decode("utf-8", "replace").partition("\n\n")[0]
            checkpoint = Checkpoint.parse_body((body + "\n").encode())
            unverified_size(note)
        except TransportError as exc:
            raise RegistryError(
                f"cannot reach a registry at {url} ({exc}): is `pht serve` running there? {FIX}"
            ) from exc
        except (ProblemError, ProtocolError, LedgerError) as exc:
            raise RegistryError(
                f"{url} answers but is not a PHT registry ({exc}); {FIX} (the URL `pht serve` "
                "prints, e.g. http://127.0.0.1:8555, without a path)"
            ) from exc
    return RegistryFacts(url=url, origin=checkpoint.origin, size=size, note=note)


def fetch_pins(facts: RegistryFacts, key: SigningKey) -> FetchedPins:
    """The log key and genesis hash the registry at ``facts.url`` serves, read with ``key``
    (a member's). Raises :class:`ApiError` (a 401 ``unknown-key`` when ``key`` is not a current
    member's yet) or :class:`RegistryError` when the genesis does not name the key that signs the
    registry's checkpoint."""
    with client_for(facts.url, key) as client:
        entry = client.entry(0)
    body = entry.event.event.body
    if not isinstance(body, Consortium):
        raise RegistryError(f"{facts.url}: entry 0 is not a genesis (a consortium event)")
    try:
        verify_checkpoint(facts.note, parse_verifier_key(body.log_key), origin=body.origin)
    except LedgerError as exc:
        raise RegistryError(
            f"{facts.url}: its checkpoint does not verify with the log key its genesis names "
            f"({exc}); do not trust this registry"
        ) from exc
    return FetchedPins(name=body.name, origin=body.origin, log_key=body.log_key, genesis=entry.hash)


def check_log_key(facts: RegistryFacts, log_key: str) -> None:
    """The registry's public checkpoint verifies under ``log_key``; else RegistryError."""
    try:
        verifier = parse_verifier_key(log_key)
        verify_checkpoint(facts.note, verifier, origin=facts.origin)
    except LedgerError as exc:
        raise RegistryError(
            f"the registry's checkpoint does not verify with the pinned log_key ({exc}): "
            "either log_key is not the one `pht init` printed for this registry, or this is "
            "another registry"
        ) from exc


def replay(url: str, key: SigningKey, *, log_key: str | None, genesis: str | None) -> View:
    """The whole ledger at ``url``, verified under the pins (None: whatever it serves).

    Raises :class:`ApiError` or :class:`ledger.errors.UntrustedLogError` (a pin that does not
    match, or a registry caught lying)."""
    pins = Pins(log_key=log_key, genesis=genesis)
    with client_for(url, key) as client:
        try:
            return catch_up(TrustedLog(Trusted(), pins=pins), client)
        except QuorumError:  # a witness policy in force: read the cosigned checkpoint
            return catch_up(TrustedLog(Trusted(), pins=pins), client, cosigned=True)
