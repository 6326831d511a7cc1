"""Two sections of the site's ``config.json``, each a value of its own: ``limits`` (what a task's
container may use at most) and ``file_service`` (where ``siteclient serve-files`` receives files).

- ``limits``: every limit is an integer within :data:`LIMIT_BOUNDS`; omitted ones keep their
  defaults.
- ``file_service``: where it listens (``host``, ``port``; 0 picks a free port), the largest file it
  accepts (``max_file_bytes``), the free disk it always leaves (``min_free_bytes``), where received
  files are kept (``inbox_dir``, default ``inbox`` beside the config) and ``public_url``, the
  ``scheme://host[:port]`` members sign requests for (what the site published as its
  ``file_service``; default the bound ``http://host:port``). The Host header of a request is never
  trusted for that. Where the inbox may lie is checked with the other paths, in
  :mod:`siteclient.config`.

The readers record problems on the :class:`~siteclient.configread.FieldReader` and return a
default, like every field reader, so a file's problems are reported together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ledger.fields import describe
from siteclient.configread import FieldReader, unknown_keys
from siteclient.errors import ConfigError

MIB = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-task resource limits applied to every container."""

    timeout_s: int = 600
    memory_mb: int = 512
    cpu_millis: int = 1000
    pids: int = 128
    output_max_bytes: int = 100 * MIB
    output_max_files: int = 100
    log_max_bytes: int = 1 * MIB
    tmpfs_mb: int = 64

    def __post_init__(self) -> None:
        for name, (low, high) in LIMIT_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"limits.{name}: expected an integer in [{low}, {high}], found {value!r}"
                )


# (low, high) bounds of each limit, inclusive.
LIMIT_BOUNDS: Mapping[str, tuple[int, int]] = {
    "timeout_s": (1, 7 * 24 * 3600),
    "memory_mb": (6, 1 << 20),  # Docker refuses less than 6 MB
    "cpu_millis": (1, 1_000_000),
    "pids": (1, 1 << 22),
    "output_max_bytes": (1, 1 << 40),
    "output_max_files": (1, 1_000_000),
    "log_max_bytes": (1, 1 << 30),
    "tmpfs_mb": (1, 1 << 20),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FileServiceConfig:
    """Where and how the site's FileService (``siteclient serve-files``) receives files."""

    inbox_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    max_file_bytes: int = 256 * MIB
    min_free_bytes: int = 64 * MIB
    public_url: str | None = None


_FILE_SERVICE_KEYS = (
    "host",
    "port",
    "max_file_bytes",
    "min_free_bytes",
    "inbox_dir",
    "public_url",
)
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:-")


def read_limits(read: FieldReader) -> Limits:
    """The ``limits`` section of the config ``read`` holds (defaults if absent or wrong)."""
    if "limits" not in read.data:
        return Limits()
    value = read.data["limits"]
    if not isinstance(value, dict):
        read.problem("limits", f"expected an object, found {describe(value)}")
        return Limits()
    read.problems.extend(unknown_keys(value, tuple(LIMIT_BOUNDS), "limits."))
    lim = FieldReader(value, read.problems, "limits.")
    defaults = Limits()
    return Limits(
        **{
            name: lim.integer(name, getattr(defaults, name), low, high)
            for name, (low, high) in LIMIT_BOUNDS.items()
        }
    )


def read_file_service(read: FieldReader, base_dir: Path) -> FileServiceConfig | None:
    """The ``file_service`` section of the config ``read`` holds (None if absent or wrong);
    a relative ``inbox_dir`` joins ``base_dir``."""
    if "file_service" not in read.data:
        return None
    value = read.data["file_service"]
    if not isinstance(value, dict):
        read.problem("file_service", f"expected an object, found {describe(value)}")
        return None
    read.problems.extend(unknown_keys(value, _FILE_SERVICE_KEYS, "file_service."))
    fs = FieldReader(value, read.problems, "file_service.")
    defaults = FileServiceConfig(inbox_dir=base_dir / "inbox")
    host = fs.string("host") if "host" in value else defaults.host
    if host is not None and (not set(host) <= _HOST_CHARS or len(host) > 253):
        fs.problem("host", f"expected a host name or IP address, found {host[:80]!r}")
    inbox = fs.path("inbox_dir", base_dir) if "inbox_dir" in value else defaults.inbox_dir
    public_url = (
        fs.url("public_url", allow_query=False) if value.get("public_url") is not None else None
    )
    if public_url is not None and urlsplit(public_url).path:
        fs.problem("public_url", f"expected scheme://host[:port] without a path: {public_url!r}")
    return FileServiceConfig(
        inbox_dir=inbox or defaults.inbox_dir,
        host=host or defaults.host,
        port=fs.integer("port", defaults.port, 0, 65535),
        max_file_bytes=fs.integer("max_file_bytes", defaults.max_file_bytes, 1, 1 << 40),
        min_free_bytes=fs.integer("min_free_bytes", defaults.min_free_bytes, 0, 1 << 50),
        public_url=public_url,
    )
