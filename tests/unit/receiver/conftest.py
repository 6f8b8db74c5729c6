"""Fixtures for the receiver's unit tests: real keys, real envelopes, and a store on each
backend: in-memory SQLite, and a schema of its own on the PostgreSQL test server (marked
``integration``; ``-m "not integration"`` keeps the unit run socket-free)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from receiver_helpers import GATEWAY, T0, Batches, enrollment_record, new_signer

from cloud_receiver.ingest import Ingestor
from cloud_receiver.registry import Registry
from cloud_receiver.store import Store
from nengtan.jws import Ed25519Signer
from tests.integration.receiver.pg_helpers import BACKENDS, backend_store


@pytest.fixture
def signer() -> Ed25519Signer:
    return new_signer()


@pytest.fixture
def batches(signer: Ed25519Signer) -> Batches:
    return Batches(signer)


@pytest.fixture
def registry_dir(tmp_path: Path, signer: Ed25519Signer) -> Path:
    directory = tmp_path / "gateways"
    directory.mkdir()
    (directory / f"{GATEWAY}.json").write_text(json.dumps(enrollment_record(signer, GATEWAY)))
    return directory


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Every test that takes the store runs on both backends: the ``Store`` contract is one."""
    with backend_store(request.param) as s:
        yield s


@pytest.fixture
def registry(store: Store, registry_dir: Path) -> Registry:
    r = Registry(store, registry_dir)
    r.reload()
    return r


@pytest.fixture
def ingestor(store: Store, registry: Registry) -> Ingestor:
    return Ingestor(store, registry, clock_ms=lambda: T0 + 3_600_000)
