"""Fixtures for receiver tests against the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.receiver.pg_helpers import fresh_schema


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """(name, URL) of an empty schema of its own, dropped after the test."""
    with fresh_schema() as found:
        yield found
