"""Fixtures for the accounting tests: an in-memory store, a feeder and a plant directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from accounting_helpers import Feeder, plant_dir

from cloud_receiver.store import Store, open_store


@pytest.fixture
def store() -> Iterator[Store]:
    s = open_store(":memory:")
    yield s
    s.close()


@pytest.fixture
def feeder(store: Store) -> Feeder:
    return Feeder(store)


@pytest.fixture
def plant_path(tmp_path: Path) -> Path:
    """The default two-point plant (accounting_helpers.PLANT_TOML)."""
    return plant_dir(tmp_path)
