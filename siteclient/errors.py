"""Errors raised by :mod:`siteclient`.

::

    SiteClientError
    ├── ConfigError             the site's config.json is missing, malformed or inconsistent
    ├── PolicyError             an image reference that cannot be parsed or is not allowed
    │   └── InvalidReferenceError   not a valid Docker image reference
    ├── RuntimeFailure          the container engine failed (pull, create, start, inspect)
    │   ├── EngineUnavailableError  the Docker engine cannot be reached (retry later)
    │   ├── PullError               the image could not be pulled (the task fails with the reason)
    │   └── DigestMismatchError     the pulled image's digest differs from the pinned one
    ├── OutputError             the container's outputs break the collection rules
    ├── FeedError               the registry's feed cannot be trusted (bad proof, fork, bad entry)
    │   └── ForkDetectedError       two checkpoints that are not consistent (evidence kept)
    ├── StateError              the site's own state directory cannot be read or written
    └── DeliveryError           a file could not be delivered to a member's FileService
                                (``status`` and ``slug`` say what the FileService answered)

Foreign exceptions (docker, requests, OS errors) are translated at the adapter with ``from exc``.
"""


class SiteClientError(Exception):
    """Root of every error raised by the site client."""


class ConfigError(SiteClientError):
    """The site configuration is missing, malformed or inconsistent."""


class PolicyError(SiteClientError):
    """An image reference is not allowed to run here."""


class InvalidReferenceError(PolicyError):
    """The text is not a valid Docker image reference."""


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
