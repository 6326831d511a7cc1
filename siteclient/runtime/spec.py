"""What the container runtime is asked to do and what it reports: values and pure checks.

:class:`RunSpec` and :class:`RunLimits` describe one run, :class:`PulledImage` and
:class:`RunOutcome` what came back. The checks here are pure functions over the engine's inspect
data, so they are tested without an engine:

- :func:`check_image_config` refuses images that declare ``VOLUME``s (the engine would give the
  container writable storage outside the read-only root and outside the output folder), whose
  working directory is under ``/proc``, ``/sys`` or ``/dev`` (the runc file descriptor leak of
  CVE-2024-21626 used ``WORKDIR /proc/self/fd/N``), or that declare no command at all.
- :func:`check_repo_digest` makes sure the image the engine holds is the one that was pinned.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from ledger.events import format_time
from siteclient.errors import ConfigError, DigestMismatchError, PolicyError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# What the policy module has already parsed strictly; this is only a second line of defence:
# an optional registry host (upper case allowed there, as in Docker's grammar), then a lower-case
# path.
REPOSITORY = re.compile(
    r"(?:(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|localhost|[A-Za-z0-9-]+:[0-9]+"
    r"|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+:[0-9]+)/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
ENV_VALUE_MAX = 4096
FORBIDDEN_WORKDIRS = ("/proc", "/sys", "/dev")
# Docker network modes that would give the container more than a network of its own.
FORBIDDEN_NETWORKS = frozenset({"host", "bridge", "default"})
MiB = 1 << 20


class RunState(StrEnum):
    """How a run ended (the ``result`` states a container can reach)."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunLimits:
    """Resource limits of one run. Every limit is enforced by the engine or by the runtime."""

    timeout_s: float = 3600.0
    memory_bytes: int = 512 * MiB  # swap is never added on top
    cpus: float = 1.0
    pids: int = 256
    tmpfs_bytes: int = 64 * MiB  # /tmp, and /dev/shm likewise; both count against memory
    log_max_bytes: int = 1 * MiB  # the tail of stdout+stderr that is kept
    output_max_files: int = 100
    output_max_bytes: int = 64 * MiB
    nofile: int = 4096

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= 7 * 24 * 3600:
            raise ConfigError(f"timeout must be in (0, 604800] seconds, found {self.timeout_s}")
        if self.memory_bytes < 6 * MiB:
            raise ConfigError(f"memory limit must be at least 6 MiB, found {self.memory_bytes}")
        if not 0.01 <= self.cpus <= 1024:
            raise ConfigError(f"cpus must be in [0.01, 1024], found {self.cpus}")
        for name in ("pids", "tmpfs_bytes", "log_max_bytes", "output_max_bytes", "nofile"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, found {value!r}")
        if self.output_max_files < 0:
            raise ConfigError(f"output_max_files must be >= 0, found {self.output_max_files}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpec:
    """One container run.

    ``work_dir`` is an existing directory private to the task; each run makes a fresh
    subdirectory there holding ``config.json`` (mounted read-only at
    ``/pht/input/config.json``) and ``output/`` (mounted at ``/pht/output``). ``input_dir``, if
    given, is mounted read-only at ``/pht/input/files``. ``network`` names a user-defined Docker
    network; ``None`` means no network at all.
    """

    image_id: str
    task: str
    site: str
    sparql_endpoint: str | None  # None: the site has no SPARQL store ($SPARQL_ENDPOINT unset)
    config: bytes
    work_dir: Path
    input_dir: Path | None = None
    network: str | None = None
    limits: RunLimits = field(default_factory=RunLimits)

    def __post_init__(self) -> None:
        if DIGEST.fullmatch(self.image_id) is None:
            raise ConfigError(f"image id must be sha256:<64 hex>, found {self.image_id!r}")
        for name in ("task", "site", "sparql_endpoint"):
            value = getattr(self, name)
            if value is None and name == "sparql_endpoint":
                continue
            if not value.isprintable() or len(value) > ENV_VALUE_MAX:
                raise ConfigError(f"{name} must be printable, found {value!r:.80}")
        if self.network is not None and (
            self.network in FORBIDDEN_NETWORKS
            or self.network in {"none", ""}
            or ":" in self.network
            or not self.network.isprintable()
        ):
            raise ConfigError(
                f"network must name a user-defined Docker network, found {self.network!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class PulledImage:
    """An image as pulled: ``digest`` is the repository digest actually pulled and run."""

    repository: str
    digest: str
    image_id: str

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOutcome:
    """How a run ended. ``log_tail`` holds at most ``log_max_bytes`` of the end of the log."""

    state: RunState
    exit_code: int | None
    started: str
    finished: str
    log_tail: bytes
    log_truncated: bool
    reason: str
    output_dir: Path


def check_image_config(config: Mapping[str, Any] | None, image: str) -> None:
    """Refuse an image whose configuration would weaken the sandbox. Raises PolicyError."""
    config = config or {}
    volumes = config.get("Volumes") or {}
    if volumes:
        listed = ", ".join(sorted(str(v) for v in volumes)[:5])
        raise PolicyError(
            f"image {image} declares VOLUMEs ({listed}); images with volumes are refused"
        )
    if not config.get("Entrypoint") and not config.get("Cmd"):
        raise PolicyError(f"image {image} declares no command (neither ENTRYPOINT nor CMD)")
    workdir = config.get("WorkingDir") or "/"
    if not isinstance(workdir, str):
        raise PolicyError(f"image {image} has a malformed working directory {workdir!r}")
    normal = "/" + posixpath.normpath("/" + workdir).lstrip("/")
    for forbidden in FORBIDDEN_WORKDIRS:
        if normal == forbidden or normal.startswith(forbidden + "/"):
            raise PolicyError(
                f"image {image} has working directory {workdir!r} under {forbidden}; refused"
            )


def familiar_repository(repository: str) -> str:
    """The repository as Docker prints it in ``RepoDigests`` (``docker.io/library/x`` -> ``x``)."""
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if repository.startswith(prefix):
            repository = repository[len(prefix) :]
            break
    else:
        return repository
    if repository.startswith("library/") and repository.count("/") == 1:
        return repository[len("library/") :]
    return repository


def check_repo_digest(repo_digests: Sequence[str], repository: str, digest: str) -> None:
    """``repository@digest`` must be among the image's ``RepoDigests``. Raises DigestMismatch."""
    wanted = f"{familiar_repository(repository)}@{digest}"
    if wanted not in repo_digests:
        found = ", ".join(repo_digests) or "none"
        raise DigestMismatchError(f"pulled image should have digest {wanted}; it has {found}")


def engine_time(text: object, fallback: str) -> str:
    """An engine timestamp (RFC 3339, nanoseconds) in the ledger's form; ``fallback`` if unset."""
    if not isinstance(text, str) or text.startswith("0001-01-01"):
        return fallback
    match = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", text
    )
    if match is None:
        return fallback
    whole, fraction, zone = match.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    moment = datetime.fromisoformat(f"{whole}.{micro}{'+00:00' if zone == 'Z' else zone}")
    return format_time(moment.astimezone(UTC))
