"""Reading ``config.json``: strict JSON and field readers that collect problems, not raise.

Strict JSON here means: UTF-8, no duplicate keys (the second would silently win), no ``NaN`` or
``Infinity``. A :class:`FieldReader` records one message per bad field and returns a default, so
:mod:`siteclient.config` can report every problem of a file at once.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ledger.fields import describe
from siteclient.errors import ConfigError


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, config_path: Path) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {config_path} is not UTF-8: {exc}") from exc
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except _DuplicateKeyError as exc:
        raise ConfigError(f"config file {config_path}: key {exc.args[0]!r} appears twice") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {config_path} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"config file {config_path} is not valid JSON: {exc}") from exc


def unknown_keys(data: Mapping[str, object], known: tuple[str, ...], prefix: str) -> list[str]:
    problems = []
    for key in sorted(k for k in data if k not in known):
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {prefix}{close[0]!r}?" if close else ""
        problems.append(f"{prefix}{key[:60]!r}: unknown key{hint}")
    return problems


class FieldReader:
    """Reads fields of one object, recording a problem instead of raising."""

    def __init__(self, data: Mapping[str, object], problems: list[str], prefix: str = "") -> None:
        self.data = data
        self.problems = problems
        self.prefix = prefix

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.prefix}{key}: {message}")

    def string(self, key: str, *, nullable: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            expected = "a non-empty string or null" if nullable else "a non-empty string"
            self.problem(key, f"expected {expected}, found {describe(value)}")
            return None
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"expected an integer in [{low}, {high}], found {describe(value)}")
            return default
        if not low <= value <= high:
            self.problem(key, f"expected an integer in [{low}, {high}], found {value}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            self.problem(key, f"expected true or false, found {describe(value)}")
            return default
        return value

    def path(self, key: str, base_dir: Path) -> Path | None:
        value = self.string(key)
        if value is None:
            return None
        if "\0" in value:
            self.problem(key, "a path cannot contain a NUL character")
            return None
        if value.startswith("~"):
            self.problem(key, f"'~' is not expanded in {value!r}; write an absolute path")
            return None
        return Path(os.path.normpath(base_dir / value))

    def url(self, key: str, *, allow_query: bool, nullable: bool = False) -> str | None:
        value = self.string(key, nullable=nullable)
        if value is None:
            return None
        if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
            self.problem(key, f"URL {value[:80]!r} holds whitespace, control or non-ASCII text")
            return None
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises for a port that is not a number in 0..65535
        except ValueError as exc:
            self.problem(key, f"{value[:80]!r} is not a valid URL: {exc}")
            return None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.problem(key, f"expected an http:// or https:// URL with a host, found {value!r}")
            return None
        if parts.username is not None or parts.password is not None:
            self.problem(key, "credentials in the URL are refused (they would end up in logs)")
            return None
        if parts.fragment or (parts.query and not allow_query):
            what = "a fragment" if allow_query else "a query or fragment"
            self.problem(key, f"expected a URL without {what}, found {value!r}")
            return None
        return value if allow_query else value.rstrip("/")
