"""Errors raised by :mod:`siteclient`.

::

    SiteClientError
    ├── ConfigError             the site's config.json is missing, malformed or inconsistent
    ├── PolicyError             an image (or its configuration) that may not run here
    ├── RuntimeFailure          the container engine failed (pull, create, start, inspect)
    │   ├── EngineUnavailableError  the Docker engine cannot be reached (retry later)
    │   ├── PullError               the image could not be pulled (the task fails with the reason)
    │   └── DigestMismatchError     the pulled image's digest differs from the pinned one
    ├── OutputError             the container's outputs break the collection rules
    ├── InputError              the files a task names as inputs cannot be given to it
    ├── FeedError               the registry's feed cannot be trusted (bad proof, fork, bad entry)
    │   └── ForkDetectedError       two checkpoints that are not consistent (evidence kept)
    ├── WitnessWaitError        no checkpoint has met the witness quorum yet (not fatal: retried)
    ├── RegistryError           the configured registry URL is unreachable on first start, or
    │                           answers but is not a PHT registry (stops ``follow``)
    ├── MembershipError         the site's name is not a site of the consortium, or its key is
    │   │                       not that member's (``follow`` refuses to start)
    │   └── RevokedError            the site was revoked (``index``: at which entry; exit code 5)
    ├── StateError              the site's own state directory cannot be read or written
    │   └── RaceError               a received file vanished while its upload was recorded
    ├── WorkerCrashedError      a task worker hit a bug (not a registry or engine failure)
    └── DeliveryError           a file could not be delivered to a member's FileService
                                (``status`` and ``slug`` say what the FileService answered)

Foreign exceptions (docker, requests, OS errors) are translated at the adapter with ``from exc``.
An image reference that does not parse is the ledger's :class:`ledger.errors.InvalidReferenceError`
(one parser, :mod:`ledger.reference`, for the registry and the sites); the allowlist turns it into
a refusal, never lets it escape.
"""


class SiteClientError(Exception):
    """Root of every error raised by the site client."""


class ConfigError(SiteClientError):
    """The site configuration is missing, malformed or inconsistent."""


class PolicyError(SiteClientError):
    """An image is not allowed to run here."""


class RuntimeFailure(SiteClientError):
    """The container engine failed."""


class EngineUnavailableError(RuntimeFailure):
    """The Docker engine cannot be reached."""


class PullError(RuntimeFailure):
    """The image could not be pulled."""


class DigestMismatchError(RuntimeFailure):
    """The pulled image does not have the pinned digest."""


class OutputError(SiteClientError):
    """The container's outputs break the collection rules."""


class FeedError(SiteClientError):
    """The registry's feed cannot be trusted."""


class ForkDetectedError(FeedError):
    """The registry served two checkpoints that are not consistent with each other."""


class StateError(SiteClientError):
    """The site's state directory cannot be read or written."""


class RaceError(StateError):
    """The bytes of a file vanished while its upload was being recorded (send it again)."""


class InputError(SiteClientError):
    """The files a task names as inputs cannot be given to it (the task fails with this)."""


class WorkerCrashedError(SiteClientError):
    """A task worker raised something that is a bug, not bad luck; the site stops with it."""


class DeliveryError(SiteClientError):
    """A file could not be delivered to a FileService (refused, unreachable, or a bad answer).

    ``status`` is the HTTP status the FileService answered (None when it could not be reached or
    its answer was malformed); ``slug`` the problem type's last path segment (``body-too-large``,
    ``insufficient-storage``, ...) or ``""``.
    """

    def __init__(self, message: str, *, status: int | None = None, slug: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.slug = slug


class WitnessWaitError(SiteClientError):
    """No checkpoint has reached the witness policy's quorum yet: nothing is acted on. Not a lie
    and not fatal: the site waits and tries again."""


class RegistryError(SiteClientError):
    """The site config's ``registry`` cannot be used: nothing answers there (on a first start,
    before anything was ever verified), or what answers is not a PHT registry."""


class MembershipError(SiteClientError):
    """The site's name is not a current site of the consortium, or its key is not that site's."""


class RevokedError(MembershipError):
    """The site's membership was revoked at entry ``index``.

    ``verified`` is False when that entry was served by the registry (signed by an admin,
    chained to the verified history) but the registry refused this site's key before the
    checkpoint covering it could be proven consistent."""

    def __init__(self, message: str, *, index: int, verified: bool = True) -> None:
        super().__init__(message)
        self.index = index
        self.verified = verified
