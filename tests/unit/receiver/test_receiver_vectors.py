"""The normative wire vectors (tests/vectors/envelopes.json) are accepted, and hash as stated."""

from __future__ import annotations

import json
from pathlib import Path

from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.store import Store

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "envelopes.json").read_text())


def test_every_vector_envelope_is_accepted_with_its_stated_readings(
        store: Store, tmp_path: Path) -> None:
    owners = {e["key"]: e["gateway"] for e in VECTORS["envelopes"]}
    for name, key in VECTORS["keys"].items():
        material = key.get("public_key") or key["secret"]
        (tmp_path / f"{name}.json").write_text(json.dumps({
            "gateway": owners[name], "alg": key["alg"], "kid": key["kid"],
            "public_key": material, "enrolled_at": "2025-11-22T00:00:00Z"}))
    registry = Registry(store, tmp_path)
    assert registry.reload().errors == ()
    ingestor = Ingestor(store, registry)
    for vector in VECTORS["envelopes"]:
        topic = f"nengtan/v1/{vector['gateway']}/batch"
        outcome = ingestor.ingest(topic, vector["token"].encode())
        assert (outcome.status, outcome.readings) == (Status.ACCEPTED, vector["readings"])
    assert store.stats()["envelopes"] == len(VECTORS["envelopes"])
