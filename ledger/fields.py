"""Strict field readers shared by the ledger's ``from_dict`` constructors.

Each reader names where the field sits (``task.body.sites[2]``) and what was expected and found, so
that a researcher posting a malformed event learns exactly what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from ledger.errors import FormatError

T = TypeVar("T")

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z")
B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@cache
def _shape(required: tuple[str, ...], optional: tuple[str, ...]) -> tuple[frozenset[str], ...]:
    return frozenset(required), frozenset(required + optional)


def obj(
    value: object,
    where: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> Mapping[str, Any]:
    """``value`` as an object holding every required field and nothing unknown."""
    if not isinstance(value, dict):
        raise FormatError(f"{where}: expected an object, found {describe(value)}")
    keys = value.keys()
    must, may = _shape(required, optional)
    if keys >= must and keys <= may:
        return value
    missing = [name for name in required if name not in keys]
    if missing:
        raise FormatError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    unknown = sorted(k for k in keys if k not in may)
    raise FormatError(f"{where}: unknown field(s) {', '.join(unknown)}")


def string(
    value: object,
    where: str,
    *,
    pattern: re.Pattern[str] | None = None,
    max_len: int = 256,
    what: str = "",
) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{where}: expected a string, found {describe(value)}")
    if len(value) > max_len:
        raise FormatError(f"{where}: longer than {max_len} characters ({len(value)})")
    if pattern is not None and not pattern.fullmatch(value):
        raise FormatError(f"{where}: expected {what or pattern.pattern}, found {value[:80]!r}")
    return value


def integer(value: object, where: str, *, low: int = 0, high: int = 2**53 - 1) -> int:
    if type(value) is int and low <= value <= high:
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise FormatError(f"{where}: expected an integer, found {describe(value)}")
    if not low <= value <= high:
        raise FormatError(f"{where}: expected an integer in [{low}, {high}], found {value}")
    return value


_TIME_MATCH = TIME.fullmatch


def timestamp(value: object, where: str) -> str:
    if type(value) is str and len(value) <= 32 and _TIME_MATCH(value):
        text = value
    else:
        text = string(
            value, where, pattern=TIME, max_len=32, what="a UTC time like 2026-11-25T17:00:00Z"
        )
    try:
        datetime.fromisoformat(text)
    except ValueError as exc:
        raise FormatError(f"{where}: not a real time: {text!r}") from exc
    return text


def array(
    value: object, where: str, item: Callable[[object, str], T], *, max_items: int = 1024
) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise FormatError(f"{where}: expected an array, found {describe(value)}")
    if len(value) > max_items:
        raise FormatError(f"{where}: more than {max_items} items ({len(value)})")
    return tuple(item(element, f"{where}[{i}]") for i, element in enumerate(value))


_NAME_MATCH = NAME.fullmatch
_HEX64_MATCH = HEX64.fullmatch


def name(value: object, where: str) -> str:
    # The fast checks accept exactly what ``string`` accepts; ``string`` words the refusal.
    if type(value) is str and len(value) <= 63 and _NAME_MATCH(value):
        return value
    return string(value, where, pattern=NAME, max_len=63, what="a name of a-z, 0-9, '.', '_', '-'")


def hex64(value: object, where: str) -> str:
    if type(value) is str and len(value) == 64 and _HEX64_MATCH(value):
        return value
    return string(value, where, pattern=HEX64, max_len=64, what="64 lowercase hex digits")


def optional(
    mapping: Mapping[str, Any], key: str, where: str, read: Callable[[object, str], T]
) -> T | None:
    """Read an optional field; absent means None (explicit null is refused: omit the field)."""
    if key not in mapping:
        return None
    return read(mapping[key], f"{where}.{key}")
