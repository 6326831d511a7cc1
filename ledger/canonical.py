"""Canonical JSON (RFC 8785, JCS) and strict JSON parsing.

``canonical_bytes`` makes canonical bytes from a value. For the values PHT events almost always
hold (objects with ASCII keys, arrays, strings, booleans, null and integers within
±(2**53 - 1)) JCS output is byte-for-byte what ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` produces, so that C-accelerated encoder is used; anything else (floats,
non-ASCII keys, whose JCS ordering is by UTF-16 code units) goes through the ``rfc8785`` reference
implementation. ``tests/ledger/test_events.py::test_canonical_bytes_equal_the_rfc8785_reference``
checks that both paths agree.

It is not the only place canonical bytes are made: a signed envelope's and an entry's are spliced
by hand from the event's (:mod:`ledger._fast_events`, for ``SignedEvent.canonical`` and
``Entry._seal``), and ``tests/ledger/test_fast_events.py::test_splices_equal_jcs_of_every_kind``
holds each splice equal to ``canonical_bytes(to_dict())`` and to the ``rfc8785`` reference.

``parse_json`` rejects duplicate object keys, NaN and Infinity and invalid UTF-8; what else JCS
cannot represent (lone surrogates, integers outside the IEEE-754 exact range, deep nesting) is
rejected by ``canonical_bytes``, which every parsed event passes through.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from ledger.errors import EncodingError

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 32

_fast_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _plain(value: object, depth: int = 0) -> bool:
    """True when ``value`` is in the subset where json.dumps output equals JCS."""
    if depth > MAX_DEPTH:
        raise EncodingError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return True
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return True
        raise EncodingError(f"integer {value} is outside the exact range ±(2**53-1)")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodingError(f"object key {key!r} is not a string")
            if not key.isascii() or not _plain(item, depth + 1):
                return False
        return True
    if isinstance(value, list | tuple):
        return all(_plain(item, depth + 1) for item in value)
    if isinstance(value, float):
        return False
    raise EncodingError(f"cannot encode {type(value).__name__} as JSON")


def canonical_bytes(value: Any, *, known_plain: bool = False) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value.

    ``known_plain`` skips the subset walk for a value that :func:`parse_plain` produced.
    """
    try:
        if known_plain or _plain(value):
            return _fast_encoder.encode(value).encode("utf-8")
        return rfc8785.dumps(value)
    except UnicodeEncodeError as exc:
        raise EncodingError("string holds a lone surrogate, which JSON text cannot carry") from exc
    except (rfc8785.CanonicalizationError, ValueError, TypeError) as exc:
        raise EncodingError(f"cannot canonicalize: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise EncodingError(f"{name} is not valid JSON")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise EncodingError(f"duplicate object key {key!r}")
            seen.add(key)
    return obj


def parse_json(data: bytes | str, *, what: str = "document") -> Any:
    """Parse strict JSON; raise :class:`EncodingError` naming ``what`` on any problem."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray | memoryview) else data
    except UnicodeDecodeError as exc:
        raise EncodingError(f"{what} is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_reject_constant)
    except EncodingError as exc:
        raise EncodingError(f"{what}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise EncodingError(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise EncodingError(f"{what} is not valid JSON: nested too deeply to read") from exc
    except ValueError as exc:  # int() refuses a literal of more than 4300 digits
        raise EncodingError(f"{what} holds a number too long to read: {str(exc)[:60]}") from exc
    return value


class _NotPlain(Exception):
    pass


def _no_float(text: str) -> Any:
    raise _NotPlain


def _safe_int(text: str) -> int:
    value = int(text)
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    raise EncodingError(f"integer {text[:30]} is outside the exact range ±(2**53-1)")


_plain_decoder = json.JSONDecoder(parse_float=_no_float, parse_int=_safe_int)


def parse_plain(data: bytes) -> tuple[Any, bool]:
    """Parse JSON bytes for the hot path; return the value and whether it is in the plain subset.

    Plain means ASCII-only text with no floats, so ``canonical_bytes(value, known_plain=True)`` is
    exact. Duplicate keys are not detected here: callers compare the canonical bytes with ``data``,
    which a document with duplicate keys can never equal. Anything else falls back to the strict,
    general parser.
    """
    if data.isascii():
        return parse_plain_text(data.decode("ascii"))
    return parse_json(data), False


def parse_plain_text(text: str) -> tuple[Any, bool]:
    """:func:`parse_plain` for text already known to be ASCII."""
    try:
        value = _plain_decoder.decode(text)
    except _NotPlain:
        return parse_json(text), False
    except (ValueError, RecursionError) as exc:
        raise EncodingError(f"not valid JSON: {exc}") from exc
    if text.count("{") + text.count("[") > MAX_DEPTH:
        _plain(value)  # deep enough to matter: the walk enforces MAX_DEPTH
    return value, True
