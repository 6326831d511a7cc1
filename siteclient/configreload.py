"""SIGHUP: read the site config again and take what may change while the site runs.

An operator who edits ``allowed_images`` (say, to append ``(@sha256:[0-9a-f]{64})?``) or the
limits should not have to restart the site client. :func:`reload_config` reads and validates
the file completely, as at start, and returns the running config with only the
:data:`RELOADABLE` keys taken from it, plus one line per change for the log. Everything else
(the registry, the site's name and key, directories, the network) shapes state the running
client holds; a change there is reported as needing a restart and ignored. A file that does not
validate raises :class:`~siteclient.errors.ConfigError`, and the caller keeps the old config.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from siteclient.config import SiteConfig
from siteclient.errors import SiteClientError

log = logging.getLogger("siteclient")

RELOADABLE = ("allowed_images", "limits", "require_digest", "require_review")


def reload_config(current: SiteConfig, path: Path) -> tuple[SiteConfig, list[str]]:
    """The config to run with from now on, and what changed (empty: nothing did)."""
    new = SiteConfig.load(path)
    notes: list[str] = []
    ignored: list[str] = []
    for item in dataclasses.fields(SiteConfig):
        before, after = getattr(current, item.name), getattr(new, item.name)
        if before == after:
            continue
        if item.name in RELOADABLE and dataclasses.is_dataclass(before):
            notes.extend(
                f"{item.name}.{part.name}: {getattr(before, part.name)!r} -> "
                f"{getattr(after, part.name)!r}"
                for part in dataclasses.fields(before)
                if getattr(before, part.name) != getattr(after, part.name)
            )
        elif item.name in RELOADABLE:
            notes.append(f"{item.name}: {_show(before)} -> {_show(after)}")
        else:
            ignored.append(item.name)
    if ignored:
        notes.append(f"changes to {', '.join(ignored)} take effect only after a restart")
    updated = dataclasses.replace(current, **{name: getattr(new, name) for name in RELOADABLE})
    return updated, notes


class Reloader:
    """SIGHUP for ``follow``: :meth:`request` is the signal handler (it only sets a flag);
    :meth:`poll`, called from the main thread's wait loop, reloads and hands the new config to
    ``apply``, logging what changed, or why the file was not taken."""

    def __init__(self, config: SiteConfig, path: Path, apply: Callable[[SiteConfig], None]):
        self.config = config
        self._path = path
        self._apply = apply
        self._pending = threading.Event()

    def request(self, signum: int, frame: FrameType | None) -> None:
        self._pending.set()

    def poll(self) -> None:
        if not self._pending.is_set():
            return
        self._pending.clear()
        try:
            config, changes = reload_config(self.config, self._path)
        except SiteClientError as exc:
            log.error("SIGHUP: the site config does not load; keeping the running one: %s", exc)
            return
        self.config = config
        self._apply(config)
        for change in changes or ["nothing that can change while running changed"]:
            log.info("SIGHUP: %s", change)
        for warning in config.allowlist().warnings:
            log.warning("config: %s", warning)


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(repr(item) for item in value) + "]"
    return repr(value)
