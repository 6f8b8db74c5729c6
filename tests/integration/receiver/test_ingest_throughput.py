"""In-process ingest speed: 200 wire-v2 envelopes of 5,000 realistic readings each, verified,
decoded, chain-checked and committed one transaction each into a SQLite file (WAL, FULL)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.store import open_store
from nengtan.envelope import envelope_hash, seal
from nengtan.jws import Ed25519Signer, b64url
from tests.vectors import realistic

pytestmark = pytest.mark.integration

GATEWAY = "gw-speed-01"
ENVELOPES = int(os.environ.get("NENGTAN_INGEST_ENVELOPES", "200"))


def test_ingest_stores_at_least_50000_verified_readings_per_second(tmp_path: Path) -> None:
    signer = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
    (tmp_path / "gateways").mkdir()
    (tmp_path / "gateways" / f"{GATEWAY}.json").write_text(json.dumps({
        "gateway": GATEWAY, "alg": "Ed25519", "kid": signer.kid,
        "public_key": b64url(signer.public_bytes), "enrolled_at": "2025-11-22T00:00:00Z"}))
    plant = realistic.Plant(seed=3)
    tokens, head = [], None
    for envelope in plant.envelopes(ENVELOPES, 5_000, gateway=GATEWAY):
        token = seal(signer, replace(envelope, prev=head))
        head = envelope_hash(token)
        tokens.append(token.encode())
    store = open_store(tmp_path / "receiver.db")
    try:
        registry = Registry(store, tmp_path / "gateways")
        registry.reload()
        ingestor = Ingestor(store, registry)
        topic = f"nengtan/v1/{GATEWAY}/batch"
        stored = 0
        start = time.perf_counter()
        for token in tokens:
            outcome = ingestor.ingest(topic, token)
            assert outcome.status == Status.ACCEPTED, outcome
            stored += outcome.readings
        elapsed = time.perf_counter() - start
        assert store.stats()["readings"] == stored
        assert store.missing_ranges(GATEWAY, 1) == []
    finally:
        store.close()
    size = (tmp_path / "receiver.db").stat().st_size
    print(f"\ningested {len(tokens)} envelopes, {stored:,} readings in {elapsed:.2f} s: "
          f"{stored / elapsed:,.0f} readings/s, {elapsed / len(tokens) * 1000:.1f} ms/envelope; "
          f"database {size / stored:.0f} bytes/reading (before checkpointing the WAL)")
    assert stored / elapsed >= 50_000
