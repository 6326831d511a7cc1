"""A fresh PostgreSQL schema per test, in the cluster ``.ci/services.sh`` starts.

``PHT_TEST_POSTGRES`` names the database (``.ci/test`` sets it). Without it the PostgreSQL tests
skip, saying how to run them; under ``CI=true`` a skip would hide a broken host, so it fails.
Each test gets a schema of its own (``search_path`` in the DSN), dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn
from urllib.parse import quote

import pytest

ENV = "PHT_TEST_POSTGRES"
HINT = (
    "start the cluster with `.ci/services.sh start` (as root) and set "
    f"{ENV}=postgresql://postgres@127.0.0.1:5433/pht_test"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str, *, hint: str = HINT) -> NoReturn:
    """Skip the test saying ``reason`` and how to fix it; under ``CI=true``, fail it."""
    if _in_ci():
        pytest.fail(f"CI=true but {reason}; {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


def base_dsn() -> str:
    """The test database's DSN; skips (fails in CI) when there is none or it does not answer."""
    dsn = os.environ.get(ENV, "").strip()
    if not dsn:
        unavailable(f"{ENV} is not set")
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed (pip install 'psycopg[binary]')")
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL at {dsn} does not answer ({exc})")
    return dsn


def with_schema(dsn: str, schema: str) -> str:
    separator = "&" if "?" in dsn else "?"
    return f"{dsn}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A DSN whose ``search_path`` is a new, empty schema; the schema is dropped afterwards."""
    import psycopg

    dsn = base_dsn()
    schema = f"pht_t_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
