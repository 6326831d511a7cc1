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
from pathlib import Path

from siteclient.config import SiteConfig

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


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(repr(item) for item in value) + "]"
    return repr(value)
