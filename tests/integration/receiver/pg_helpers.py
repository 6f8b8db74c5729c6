"""A throwaway PostgreSQL schema per test, on the server named by ``NENGTAN_TEST_PG_URL``.

Each test gets ``t_<random>`` and a URL whose ``search_path`` points at it, so tests never see
each other's rows and can run beside a real receiver in the same database. Without a server the
test is skipped, except with ``CI=true``, where it fails: CI must not pass by testing nothing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from cloud_receiver.store import Store, open_store

PG_URL = os.environ.get("NENGTAN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def admin() -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the test database, or skip (fail on CI) without one."""
    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = (f"no PostgreSQL for the receiver tests at {PG_URL} ({str(exc).strip()}); "
                   "run scripts/ensure-tools.sh or set NENGTAN_TEST_PG_URL")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def schema_url(schema: str, base: str = PG_URL) -> str:
    """``base`` with ``search_path`` set to ``schema`` (libpq ``options``)."""
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema() -> Iterator[tuple[str, str]]:
    """(schema name, URL) of a new empty schema, dropped with everything in it afterwards."""
    name = "t_" + secrets.token_hex(6)
    with admin() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name, schema_url(name)
    finally:
        with admin() as conn:
            # A test that left a connection in a transaction must not hang the suite.
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


#: The parameters of a fixture that runs its tests on both backends.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)]


@contextmanager
def backend_store(backend: str) -> Iterator[Store]:
    """A fresh empty store: SQLite in memory, or PostgreSQL in a schema of its own."""
    if backend == "sqlite":
        store = open_store(":memory:")
        try:
            yield store
        finally:
            store.close()
        return
    with fresh_schema() as (_, url):
        store = open_store(url)
        try:
            yield store
        finally:
            store.close()
