"""The site config (``config.json``): read at start, validated completely, then immutable.

``siteclient init`` writes one; ``siteclient check-config`` checks one against the world; SIGHUP
makes ``follow`` read it again for the keys :mod:`siteclient.configreload` may change.

Every problem is found before anything runs and reported together, one line each, so an operator
fixes the file in one pass. Unknown keys are refused (a typo such as ``allowed_image`` would
otherwise silently leave the default in place) with a did-you-mean suggestion.

Example::

    {
      "site": "site-a",
      "key_file": "keys/site-a.key",
      "registry": "https://registry.example.org",
      "log_key": "pht.example.org/consortium+1a2b3c4d+AQ...",
      "genesis": "<64 hex: entry hash of entry 0>",
      "sparql_endpoint": "http://sparql.site-a.internal:7878/query",
      "allowed_images": ["myconsortium/[a-z0-9._-]+:[\\\\w.-]+"],
      "require_digest": false,
      "require_review": false,
      "network": null,
      "limits": {"timeout_s": 600, "memory_mb": 512},
      "parallelism": 1,
      "state_dir": "state",
      "work_dir": "work",
      "poll_wait_s": 25,
      "file_service": {"host": "127.0.0.1", "port": 8443, "max_file_bytes": 268435456,
                       "min_free_bytes": 67108864, "inbox_dir": "inbox", "public_url": null}
    }

Decisions:

- Relative paths (``key_file``, ``state_dir``, ``work_dir``) are resolved against the directory of
  the config file, never the current directory; ``~`` is not expanded (write an absolute path).
- ``log_key`` and ``genesis`` are what ``pht init`` printed as ``log_key`` and ``genesis_hash``
  (``siteclient init`` fetches them for the operator to confirm). Both must be present.
  ``null`` means **trust on first use**: the follower pins what the registry first serves into
  the state directory, says so loudly in its log, and from then on treats the pinned value
  exactly like a configured one. Being explicit keeps TOFU a choice, never the accident of a
  missing key; :attr:`SiteConfig.trust_on_first_use` names them.
- ``sparql_endpoint`` is the URL containers get as ``$SPARQL_ENDPOINT``; ``null`` says the site has
  no SPARQL store, and then ``$SPARQL_ENDPOINT`` is not set in the container at all. A
  container reaches the endpoint only over ``network``: with the default ``null`` it has no
  network, so an endpoint must be on the user-defined Docker network named there
  (``siteclient check-config`` tries it from a container on that network).
- ``network`` ``null`` means Docker network ``none``. ``"host"`` is refused (it would hand the
  container the site's own network stack); ``"none"`` is refused in favour of ``null``.
- ``state_dir``, ``work_dir`` and the key file must not lie inside one another: the work directory
  holds what containers wrote, and must never reach the site's key or its trusted state.
- ``poll_wait_s`` is at most 30, the longest wait the registry's API accepts.
- ``limits`` and ``file_service`` (optional; ``siteclient serve-files`` needs the latter) are
  read by :mod:`siteclient.configsections`. The FileService's ``inbox_dir`` must not overlap
  ``state_dir`` or ``work_dir`` and must not hold the key file.
- ``require_review`` (default false): run only tasks whose image is pinned by a digest approved
  by the consortium's review as of the task's entry and not revoked before the run starts
  (:mod:`siteclient.policy.review`); the allowlist still applies on top.
- ``identity_file`` (optional) is the site's age identity (``pht keys new`` writes one, 0600):
  it decrypts files other sites delivered to this site's FileService for a task's ``inputs``.
- ``witness_key_file`` (optional): the site's witness key (a key of its own, published as its
  member ``witness_key``; ``pht witness vkey SITE FILE`` prints it). With it the site cosigns
  each checkpoint it verified (:mod:`siteclient.follow.witness`); it only sends, so a site with
  no inbound port witnesses too.
- ``load`` also checks the file system: the key file exists, is a regular file and is not readable
  by group or others. Directories are created later, by the state module.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from ledger.checkpoint import parse_verifier_key
from ledger.errors import LedgerError
from ledger.fields import HEX64, NAME, describe
from siteclient.configread import FieldReader, parse_json, unknown_keys
from siteclient.configsections import (
    FileServiceConfig,
    Limits,
    read_file_service,
    read_limits,
)
from siteclient.errors import ConfigError
from siteclient.policy.allowlist import Allowlist, pattern_problems

CONFIG_MAX_BYTES = 1 << 20
MAX_POLL_WAIT_S = 30


_REQUIRED = (
    "site",
    "key_file",
    "registry",
    "log_key",
    "genesis",
    "sparql_endpoint",
    "allowed_images",
    "state_dir",
    "work_dir",
)
_OPTIONAL = (
    "require_digest",
    "require_review",
    "network",
    "limits",
    "parallelism",
    "poll_wait_s",
    "file_service",
    "identity_file",
    "witness_key_file",
)
_NETWORK_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteConfig:
    """A validated site configuration; paths are absolute."""

    site: str
    key_file: Path
    registry: str
    log_key: str | None
    genesis: str | None
    sparql_endpoint: str | None
    allowed_images: tuple[str, ...]
    state_dir: Path
    work_dir: Path
    require_digest: bool = False
    require_review: bool = False
    network: str | None = None
    limits: Limits = field(default_factory=Limits)
    parallelism: int = 1
    poll_wait_s: int = 25
    file_service: FileServiceConfig | None = None
    identity_file: Path | None = None
    witness_key_file: Path | None = None  # the site's own witness key (DESIGN 12), if it witnesses

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SiteConfig:
        """Read, parse and validate ``path``; raise :class:`ConfigError` listing every problem."""
        config_path = Path(path).absolute()
        try:
            with config_path.open("rb") as handle:
                raw = handle.read(CONFIG_MAX_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError(f"config file {config_path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_path}: {exc.strerror}") from exc
        if len(raw) > CONFIG_MAX_BYTES:
            raise ConfigError(f"config file {config_path} is larger than {CONFIG_MAX_BYTES} bytes")
        data = parse_json(raw, config_path)
        config, problems = _build(data, config_path.parent)
        if config is not None:
            problems.extend(_check_files(config))
        if problems or config is None:
            _raise(config_path, problems)
        return config

    @classmethod
    def from_dict(cls, data: object, *, base_dir: str | os.PathLike[str]) -> SiteConfig:
        """Validate parsed JSON without touching the file system; relative paths join ``base_dir``.

        Raises :class:`ConfigError` listing every problem.
        """
        config, problems = _build(data, Path(base_dir).absolute())
        if problems or config is None:
            _raise(Path(base_dir) / "<config>", problems)
        return config

    @property
    def trust_on_first_use(self) -> tuple[str, ...]:
        """The pins left to trust on first use (``log_key``, ``genesis``); empty when all pinned."""
        return tuple(
            name
            for name, value in (("log_key", self.log_key), ("genesis", self.genesis))
            if not value
        )

    def allowlist(self) -> Allowlist:
        """The site's image policy (patterns were checked at load)."""
        return Allowlist(self.allowed_images, site=self.site)

    def warnings(self) -> tuple[str, ...]:
        """Things the operator should read in the log at start; none of them stops the site."""
        notes = [
            f"{name} is null: trusting the registry's value on first use and pinning it in "
            f"{self.state_dir}"
            for name in self.trust_on_first_use
        ]
        if self.network is not None:
            notes.append(
                f"containers join Docker network {self.network!r}: whatever that network reaches, "
                "a container can send data to"
            )
        notes.extend(self.allowlist().warnings)
        return tuple(notes)


# -- parsing -------------------------------------------------------------------------------------


def _raise(config_path: Path, problems: list[str]) -> NoReturn:
    count = len(problems)
    lines = "\n".join(f"  - {problem}" for problem in problems)
    noun = "problem" if count == 1 else "problems"
    raise ConfigError(f"config file {config_path} has {count} {noun}:\n{lines}")


def _allowed_images(read: FieldReader) -> tuple[str, ...]:
    if "allowed_images" not in read.data:
        return ()
    value = read.data["allowed_images"]
    if not isinstance(value, list):
        read.problem(
            "allowed_images", f"expected an array of regular expressions, found {describe(value)}"
        )
        return ()
    read.problems.extend(pattern_problems(value))
    return tuple(item for item in value if isinstance(item, str))


def _network(read: FieldReader) -> str | None:
    network = read.string("network", nullable=True)
    if network in ("host", "none"):
        hint = "use null for no network" if network == "none" else "it shares the host's network"
        read.problem("network", f"{network!r} is refused: {hint}")
    elif network is not None and (not set(network) <= _NETWORK_CHARS or not network[0].isalnum()):
        read.problem("network", f"expected a Docker network name, found {network[:80]!r}")
    return network


def _build(data: object, base_dir: Path) -> tuple[SiteConfig | None, list[str]]:
    problems: list[str] = []
    if not isinstance(data, dict):
        return None, [f"the top level must be a JSON object, found {describe(data)}"]
    problems.extend(unknown_keys(data, _REQUIRED + _OPTIONAL, ""))
    problems.extend(f"{key!r}: missing (required)" for key in _REQUIRED if key not in data)
    read = FieldReader(data, problems)

    site = read.string("site") if "site" in data else None
    if site is not None and not NAME.fullmatch(site):
        read.problem("site", f"expected a member name of a-z, 0-9, '.', '_', '-', found {site!r}")
        site = None
    key_file = read.path("key_file", base_dir) if "key_file" in data else None
    state_dir = read.path("state_dir", base_dir) if "state_dir" in data else None
    work_dir = read.path("work_dir", base_dir) if "work_dir" in data else None
    registry = read.url("registry", allow_query=False) if "registry" in data else None
    sparql = read.url("sparql_endpoint", allow_query=True, nullable=True)

    log_key = read.string("log_key", nullable=True)
    if log_key is not None:
        try:
            parse_verifier_key(log_key)
        except LedgerError as exc:
            read.problem("log_key", f"not a registry note verifier key: {exc}")
    genesis = read.string("genesis", nullable=True)
    if genesis is not None and not HEX64.fullmatch(genesis):
        read.problem("genesis", f"expected 64 lowercase hex digits or null, found {genesis[:80]!r}")

    allowed = _allowed_images(read)
    network = _network(read)
    limits = read_limits(read)
    require_digest = read.boolean("require_digest", False)
    require_review = read.boolean("require_review", False)
    parallelism = read.integer("parallelism", 1, 1, 64)
    poll_wait_s = read.integer("poll_wait_s", 25, 0, MAX_POLL_WAIT_S)
    file_service = read_file_service(read, base_dir)
    identity_file = read.path("identity_file", base_dir) if "identity_file" in data else None
    witness_key_file = (
        read.path("witness_key_file", base_dir) if "witness_key_file" in data else None
    )
    if witness_key_file is not None and witness_key_file == key_file:
        read.problem("witness_key_file", "must be a key of its own, not the site's key_file")

    problems.extend(_overlaps(key_file=key_file, state_dir=state_dir, work_dir=work_dir))
    if identity_file is not None and work_dir is not None and _inside(identity_file, work_dir):
        problems.append(f"identity_file {identity_file} lies inside work_dir {work_dir}")
    if file_service is not None:
        problems.extend(
            _inbox_overlaps(
                file_service.inbox_dir, key_file=key_file, state_dir=state_dir, work_dir=work_dir
            )
        )
    if problems:
        return None, problems
    assert site is not None and key_file is not None and registry is not None
    assert state_dir is not None and work_dir is not None
    config = SiteConfig(
        site=site,
        key_file=key_file,
        registry=registry,
        log_key=log_key,
        genesis=genesis,
        sparql_endpoint=sparql,
        allowed_images=allowed,
        state_dir=state_dir,
        work_dir=work_dir,
        require_digest=require_digest,
        require_review=require_review,
        network=network,
        limits=limits,
        parallelism=parallelism,
        poll_wait_s=poll_wait_s,
        file_service=file_service,
        identity_file=identity_file,
        witness_key_file=witness_key_file,
    )
    return config, problems


def _inside(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _overlaps(*, key_file: Path | None, state_dir: Path | None, work_dir: Path | None) -> list[str]:
    problems = []
    if (
        state_dir is not None
        and work_dir is not None
        and (_inside(state_dir, work_dir) or _inside(work_dir, state_dir))
    ):
        problems.append(
            f"state_dir {state_dir} and work_dir {work_dir} must be separate directories, "
            "neither inside the other (containers write into work_dir)"
        )
    if key_file is not None and work_dir is not None and _inside(key_file, work_dir):
        problems.append(
            f"key_file {key_file} lies inside work_dir {work_dir}, where containers write"
        )
    return problems


def _inbox_overlaps(
    inbox: Path, *, key_file: Path | None, state_dir: Path | None, work_dir: Path | None
) -> list[str]:
    problems = []
    for name, folder in (("state_dir", state_dir), ("work_dir", work_dir)):
        if folder is not None and (_inside(inbox, folder) or _inside(folder, inbox)):
            problems.append(
                f"file_service.inbox_dir {inbox} and {name} {folder} must be separate "
                "directories, neither inside the other"
            )
    if key_file is not None and _inside(key_file, inbox):
        problems.append(f"key_file {key_file} lies inside file_service.inbox_dir {inbox}")
    return problems


def _check_files(config: SiteConfig) -> list[str]:
    try:
        info = config.key_file.stat()
    except FileNotFoundError:
        return [f"key_file: {config.key_file} does not exist (create it with: pht keys new)"]
    except OSError as exc:
        return [f"key_file: cannot read {config.key_file}: {exc.strerror}"]
    if not stat.S_ISREG(info.st_mode):
        return [f"key_file: {config.key_file} is not a regular file"]
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(info.st_mode)
        return [
            f"key_file: {config.key_file} has mode {mode:04o}; expected 0600 "
            f"(run: chmod 600 {config.key_file})"
        ]
    return []
