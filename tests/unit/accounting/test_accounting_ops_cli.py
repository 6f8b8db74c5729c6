"""``nengtan receiver output …`` and ``metering …`` on a SQLite file with stored counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from accounting_helpers import HOUR, JUNE, MINUTE, Feeder, plant_dir
from click.testing import CliRunner

from cloud_receiver.cli import receiver
from cloud_receiver.cli_ops import output
from cloud_receiver.store import open_store

OUTPUT = "date,node,shift,product,quantity,unit\n2025-06-01,line1,1,clinker,10,t\n"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "receiver.toml"
    (tmp_path / "gateways").mkdir()
    config.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n')
    store = open_store(tmp_path / "r.db")
    feeder = Feeder(store)
    feeder.steady("m1", JUNE, JUNE + 24 * HOUR, 15 * MINUTE, 0.0, 10.0)  # 960 kWh
    feeder.steady("m2", JUNE, JUNE + 24 * HOUR, 15 * MINUTE, 0.0, 9.0)   # 864 kWh
    store.close()
    plant = plant_dir(tmp_path, extra={
        "products.toml": '[products.clinker]\nbenchmark = "cement_clinker"\n'})
    return config, plant


@pytest.mark.parametrize("name", sorted(output.commands))
def test_output_subcommands_have_examples(name: str) -> None:
    assert "Example:" in CliRunner().invoke(receiver, ["output", name, "-h"]).output


def test_import_then_intensity(setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, plant = setup
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text("date,node,shift,product,quantity,unit\n2025-06-01,line9,1,clinker,x,t\n")
    result = runner.invoke(receiver, ["output", "import", "--plant", str(plant), str(bad)])
    assert result.exit_code == 2
    assert "line 2, column 'node': 'line9' is not a node" in result.output
    assert "line 2, column 'quantity'" in result.output
    assert not (plant / "output.csv").exists()  # nothing written
    good = tmp_path / "june.csv"
    good.write_text(OUTPUT)
    result = runner.invoke(receiver, ["output", "import", "--plant", str(plant), str(good)])
    assert result.exit_code == 0, result.output
    assert "1 record(s) merged; output.csv now holds 1" in result.output
    result = runner.invoke(receiver, ["output", "intensity", "--config", str(config), "--plant",
                                      str(plant), "--month", "2025-06", "--grain", "shift",
                                      "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["rows"]
    # Shift 1 (00:00-08:00): 32 × 9 kWh = 288 kWh × 0.1229 = 35.3952 kgce over 10 t.
    assert row["period"] == "2025-06-01/1"
    assert row["kgce"] == pytest.approx(35.3952)
    assert row["kgce_per_unit"] == pytest.approx(3.53952)
    assert row["benchmark"]["classification"] == "benchmark"
    text = runner.invoke(receiver, ["output", "intensity", "--config", str(config), "--plant",
                                    str(plant), "--month", "2025-06", "--grain", "shift"]).output
    assert "3.5395 kgce/unit" in text and "达到标杆水平" in text


def test_balance_and_coverage(setup: tuple[Path, Path]) -> None:
    config, plant = setup
    runner = CliRunner()
    result = runner.invoke(receiver, ["metering", "balance", "--config", str(config), "--plant",
                                      str(plant), "--month", "2025-06", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["rows"]
    # One day stored in a 30-day month: not judged (incomplete), the amounts still shown.
    assert (row["parent_amount"], row["children_amount"], row["status"]) == (
        960.0, 864.0, "incomplete")
    # loss 960 - 864 = 96 kWh = 10 % of 960.
    assert (row["loss"], row["loss_pct"]) == (96.0, 10.0)
    result = runner.invoke(receiver, ["metering", "coverage", "--plant", str(plant)])
    assert result.exit_code == 0, result.output
    assert "electricity  level 1: 1/1 = 100.0 % (GB 17167: 100 %) meets" in result.output
