"""The `receiver` CLI: help with examples, exit codes, JSON output, safe re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from receiver_helpers import CHECKPOINT_TOPIC, TOPIC, Batches, enrollment_record, new_signer

from cloud_receiver.cli import receiver
from cloud_receiver.config import load_config
from cloud_receiver.ingest import Ingestor
from cloud_receiver.registry import Registry
from cloud_receiver.store import open_store
from nengtan.envelope import Gap


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "gateways").mkdir()
    path = tmp_path / "receiver.toml"
    path.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n')
    return path


@pytest.mark.parametrize("name", sorted(receiver.commands))
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(receiver, [name, "-h"])
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_the_group_help_has_an_example() -> None:
    assert "Example:" in CliRunner().invoke(receiver, ["--help"]).output


def test_a_config_error_exits_2_with_every_problem_and_a_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nport = "x"\n[storage]\npath = "r.db"\n')
    result = CliRunner().invoke(receiver, ["report", "--config", str(bad)])
    assert result.exit_code == 2
    assert "At 'mqtt.port'" in result.output and "At 'registry': required key is missing" in result.output
    assert "hint: " in result.output and "receiver.sample.toml" in result.output


def test_report_without_a_database_exits_1(config_file: Path) -> None:
    result = CliRunner().invoke(receiver, ["report", "--config", str(config_file)])
    assert result.exit_code == 1
    assert "there is no receiver database" in result.output


def test_enroll_then_ingest_then_report_and_quarantine_as_json(
        config_file: Path, tmp_path: Path) -> None:
    batches = Batches(new_signer())
    record = tmp_path / "gw.enroll.json"
    record.write_text(json.dumps(enrollment_record(batches.signer, batches.gateway)))
    runner = CliRunner()
    first = runner.invoke(receiver, ["enroll", "--config", str(config_file), str(record)])
    again = runner.invoke(receiver, ["enroll", "--config", str(config_file), str(record)])
    assert (first.exit_code, again.exit_code) == (0, 0)
    assert "enrolled" in first.output and "already enrolled" in again.output

    config = load_config(config_file)
    store = open_store(config.storage_path)
    ingestor = Ingestor(store, Registry(store, config.registry_dir))
    ingestor.ingest(TOPIC, batches.seal(1, 3, values=[100.0, 100.5, 101.25]).encode())
    ingestor.ingest(TOPIC, b"not a token")
    store.close()

    report = runner.invoke(receiver, ["report", "--config", str(config_file), "--json",
                                      "--day", "2025-06-01"])
    assert report.exit_code == 0, report.output
    data = json.loads(report.output)
    assert [(r["kwh"], r["kgce"], r["kgco2"]) for r in data["rows"]] == [
        (1.25, 0.153625, 0.737125)]
    assert data["factors"]["grid_co2"]["value"] == 0.5897
    assert data["quarantine"] == {"malformed": 1}

    table = runner.invoke(receiver, ["report", "--config", str(config_file)])
    assert "0.737" in table.output and "kgCO2" in table.output

    listed = runner.invoke(receiver, ["quarantine", "--config", str(config_file), "--json"])
    items = json.loads(listed.output)["items"]
    assert [(q["reason"], q["topic"]) for q in items] == [("malformed", TOPIC)]


def test_enrolling_a_record_with_a_wrong_kid_exits_1_naming_the_file(
        config_file: Path, tmp_path: Path) -> None:
    record = tmp_path / "wrong.json"
    record.write_text(json.dumps({**enrollment_record(new_signer(), "gw-x"),
                                  "kid": new_signer().kid}))
    result = CliRunner().invoke(receiver, ["enroll", "--config", str(config_file), str(record)])
    assert result.exit_code == 1
    assert "wrong.json" in result.output and "does not match" in result.output


def test_the_group_is_named_receiver_for_mounting() -> None:
    assert isinstance(receiver, click.Group) and receiver.name == "receiver"


def test_gaps_lists_declared_and_missing_ranges_as_text_and_json(
        config_file: Path, tmp_path: Path) -> None:
    batches = Batches(new_signer())
    record = tmp_path / "gw.enroll.json"
    record.write_text(json.dumps(enrollment_record(batches.signer, batches.gateway)))
    runner = CliRunner()
    assert runner.invoke(receiver, ["enroll", "--config", str(config_file), str(record)]).exit_code == 0
    config = load_config(config_file)
    store = open_store(config.storage_path)
    ingestor = Ingestor(store, Registry(store, config.registry_dir))
    ingestor.ingest(TOPIC, batches.seal(1, 2).encode())
    ingestor.ingest(TOPIC, batches.seal(5, gaps=[Gap(3, 3, 1, "disk_cap")]).encode())
    batches.seal(6, 8)
    ingestor.ingest(CHECKPOINT_TOPIC, batches.checkpoint(8).encode())
    store.close()

    text = runner.invoke(receiver, ["gaps", "--config", str(config_file)])
    assert text.exit_code == 0, text.output
    assert "gw-zz-01 epoch 1: 2 envelope(s) up to cycle 5; latest checkpoint: cycle 8" in text.output
    assert "3..3 (1 cycle(s)) declared by the gateway: disk_cap" in text.output
    assert "4..4 (1 cycle(s)) missing" in text.output and "6..8 (3 cycle(s)) missing" in text.output

    data = json.loads(runner.invoke(receiver, ["gaps", "--config", str(config_file), "--json",
                                               "--gateway", "gw-zz-01"]).output)
    [stream] = data["streams"]
    assert (stream["missing_cycles"], stream["declared_cycles"]) == (4, 1)
    assert stream["checkpoint"]["last"] == 8 and data["alerts"] == []
    other = runner.invoke(receiver, ["gaps", "--config", str(config_file), "--gateway", "nobody"])
    assert "(nothing stored for this selection)" in other.output
