"""`nengtan receiver rollups`: buckets as stored, in local time, and a rebuild that agrees."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from receiver_helpers import GATEWAY, TOPIC, Batches, enrollment_record, new_signer

from cloud_receiver.cli import receiver
from cloud_receiver.config import load_config
from cloud_receiver.ingest import Ingestor
from cloud_receiver.registry import Registry
from cloud_receiver.store import open_store


def _config_with_data(tmp_path: Path) -> Path:
    (tmp_path / "gateways").mkdir()
    signer = new_signer()
    (tmp_path / "gateways" / "gw.json").write_text(json.dumps(enrollment_record(signer, GATEWAY)))
    path = tmp_path / "receiver.toml"
    path.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n')
    store = open_store(load_config(path).storage)
    registry = Registry(store, tmp_path / "gateways")
    registry.reload()
    batches, ingestor = Batches(signer), Ingestor(store, registry)
    # Cycles 1..90 one minute apart from 2025-06-01 00:01 UTC (08:01 in Shanghai), counter
    # 101..190: 89 intervals of 1 kWh, all in the hours starting 08:00 and 09:00 local.
    for seq in range(1, 91, 10):
        ingestor.ingest(TOPIC, batches.seal(seq, seq + 9).encode())
    store.close()
    return path


def test_hourly_buckets_are_listed_in_local_time_and_sum_to_the_counter_difference(
        tmp_path: Path) -> None:
    config = _config_with_data(tmp_path)
    result = CliRunner().invoke(receiver, ["rollups", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rollups"]
    # 08:00-09:00 local holds the intervals ending at cycles 2..60 (59 kWh; the reading at
    # 09:00 closes 08:59-09:00), 09:00-10:00 those ending at 61..90 (30 kWh): 190 - 101 = 89.
    assert [(r["amount"], r["intervals"]) for r in rows] == [(59.0, 59), (30.0, 30)]
    text = CliRunner().invoke(receiver, ["rollups", "--config", str(config), "--from",
                                         "2025-06-01T09:00"]).output
    assert "2025-06-01 09:00" in text and "2025-06-01 08:00" not in text and "1 bucket(s)" in text


def test_rebuild_reproduces_the_incremental_rollups(tmp_path: Path) -> None:
    config = _config_with_data(tmp_path)
    args = ["rollups", "--config", str(config), "--period", "15m", "--json"]
    before = json.loads(CliRunner().invoke(receiver, args).output)["rollups"]
    after = json.loads(CliRunner().invoke(receiver, [*args, "--rebuild"]).output)
    # Intervals end at minutes 2..90 after 08:00 local: six quarter-hour buckets.
    assert after["rebuilt_gateways"] == 1 and after["rollups"] == before and len(before) == 6


def test_a_missing_database_is_an_error_not_an_empty_one(tmp_path: Path) -> None:
    (tmp_path / "gateways").mkdir()
    path = tmp_path / "receiver.toml"
    path.write_text('[storage]\npath = "typo.db"\n[registry]\ndir = "gateways"\n')
    result = CliRunner().invoke(receiver, ["rollups", "--config", str(path)])
    assert result.exit_code == 1 and "no receiver database" in result.output
    assert not (tmp_path / "typo.db").exists()
