"""The monthly/annual energy-carbon report: golden totals, reconciliation with the stored
readings, the five formats and the CLI (`nengtan receiver report --month/--year`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from accounting_helpers import JULY, JUNE, MINUTE, Feeder, local_ms, plant_dir
from click.testing import CliRunner
from openpyxl import load_workbook

from cloud_receiver.accounting import render
from cloud_receiver.accounting.factors import Choice
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.accounting.report import Report, annual_report, monthly_report
from cloud_receiver.store import Store, open_store
from nengtan.cli import main

Q = 15 * MINUTE
HENAN_2023 = Choice("statistical", "henan", 2023)
REPLACED = """
[[replacement]]
point = "line1-feeder"
at = 2025-06-15T10:05:00+08:00
old_final = 6384.4
new_initial = 0.0
"""


def feed_june(feeder: Feeder) -> None:
    """Incomer m1: 1000 + 2.5 k kWh every 15 min (2880 intervals = 7200 kWh) with a 6 h gap on
    06-10 10:00–16:00. Feeder m2: 1 kWh per 15 min, replaced on 06-15 10:05 (2880 kWh)."""
    gap_from, gap_to = local_ms("2025-06-10T10:00"), local_ms("2025-06-10T16:00")
    feeder.add("m1", [(JUNE + k * Q, 1000.0 + 2.5 * k) for k in range(2881)
                      if not gap_from < JUNE + k * Q < gap_to])
    feeder.add("m2", [(JUNE + k * Q, 5000.0 + k) for k in range(1385)])
    feeder.add("m2", [(JUNE + k * Q, 0.6 + (k - 1385)) for k in range(1385, 2881)])


@pytest.fixture
def june(store: Store, feeder: Feeder, tmp_path: Path) -> Report:
    feed_june(feeder)
    plant = load_plant(plant_dir(tmp_path, replacements=REPLACED))
    return monthly_report(store, plant, HENAN_2023, 2025, 6, now_ms=JULY + 1)


def test_monthly_totals_golden(june: Report) -> None:
    rows = {(n.node, n.energy_type): n for n in june.nodes}
    # Enterprise = the incomer only (the feeder's parent is inside): 7200 kWh.
    ent = rows[("ent", "electricity")]
    assert ent.points == ("incomer",) and ent.amount == pytest.approx(7200.0)
    assert ent.kgce == pytest.approx(7200 * 0.1229)  # 884.88 kgce
    assert ent.kgco2 == pytest.approx(7200 * 0.5897)  # 4245.84 kgCO2 (河南 2023)
    # The line counts its feeder: 1384 + 0.4 + 0.6 + 1495 = 2880 kWh.
    line = rows[("line1", "electricity")]
    assert line.amount == pytest.approx(2880.0) and line.kgce == pytest.approx(2880 * 0.1229)
    assert june.total_kgce == pytest.approx(884.88)
    assert june.total_kgco2 == pytest.approx(4245.84)
    assert ("ws1", "electricity") in rows and ("press1", "electricity") not in rows


def test_every_point_reconciles_with_its_stored_readings(june: Report) -> None:
    points = {p.id: p for p in june.points}
    inc = points["incomer"]
    # (8200 − 1000) + 0 = 7200: first reading 06-01 00:00, last 07-01 00:00
    assert [(a.value, b.value) for a, b in inc.readings] == [(1000.0, 8200.0)]
    assert inc.reconciled == pytest.approx(inc.amount)
    feeder = points["line1-feeder"]
    # (1495.6 − 5000) + (6384.4 − 0.0) = 2880: the replacement adds old_final − new_initial
    assert feeder.adjustment == pytest.approx(6384.4 - 0.0)
    assert feeder.reconciled == pytest.approx(feeder.amount) == pytest.approx(2880.0)
    assert inc.completeness == pytest.approx(100 * (2880 - 24) / 2880)
    assert [(g.point, g.hours) for g in june.gaps] == [("incomer", 6.0)]


def test_text_shows_factors_completeness_gaps_and_the_arithmetic(june: Report) -> None:
    text = render.render_text(june)
    for needle in ("total kgce                   884.880000", "0.1229 kgce/kWh",
                   "0.5897 kgCO2/kWh", "grid_co2.toml@2026-01", "completeness 99.1667 %",
                   "(8200.0 − 1000.0)", "incomer: 2025-06-10 10:00 → 2025-06-10 16:00 (6 h",
                   "line1-feeder replacement at 2025-06-15 10:05"):
        assert needle in text, needle


def test_csv_json_html_xlsx_carry_the_same_numbers(june: Report, tmp_path: Path) -> None:
    rows = list(csv.reader(io.StringIO(render.render_csv(june))))
    assert ["# total kgce", "884.880000"] in rows
    assert any(r[:2] == ["ent", "Test Co."] and float(r[6]) == 7200.0 for r in rows)
    doc = json.loads(render.render_json(june))
    assert doc["head"]["total kgCO2"] == "4245.840000"
    factors = next(t for t in doc["tables"] if t["title"] == "Factors")["rows"]
    assert factors[0][0] == "electricity" and factors[0][2] == 0.1229
    page = render.render_html(june)
    assert page.startswith("<!doctype html>") and "@media print" in page and "<script" not in page
    assert "<td class='n'>7200.0</td>" in page
    path = tmp_path / "r.xlsx"
    path.write_bytes(render.render_xlsx(june))
    wb = load_workbook(path)
    assert wb.sheetnames[:3] == ["Report", "Totals by node and energy type", "Metering points"]
    totals = wb["Totals by node and energy type"]
    assert [c.value for c in totals[2]][:7] == ["ent", "Test Co.", "enterprise", 0,
                                                "electricity", "kWh", 7200.0]


def test_annual_report_has_the_months(store: Store, feeder: Feeder, tmp_path: Path) -> None:
    feed_june(feeder)
    plant = load_plant(plant_dir(tmp_path, replacements=REPLACED))
    year = annual_report(store, plant, HENAN_2023, 2025, now_ms=JULY + 1)
    assert year.enterprise_rows[0].amount == pytest.approx(7200.0)
    assert [(m, a) for m, _, a, _, _ in year.months if a] == [("2025-06", pytest.approx(7200.0))]
    # Jan–May are due and empty: the incomer is far from complete over the year.
    assert year.completeness < 50


def cli_setup(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "receiver.toml"
    config.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n'
                      '[carbon]\nregime = "statistical"\nregion = "henan"\nyear = 2023\n')
    store = open_store(tmp_path / "r.db")
    try:
        feed_june(Feeder(store))
    finally:
        store.close()
    return config, plant_dir(tmp_path, replacements=REPLACED)


def test_cli_month_text_and_xlsx(tmp_path: Path) -> None:
    config, plant = cli_setup(tmp_path)
    base = ["receiver", "report", "--config", str(config), "--plant", str(plant)]
    result = CliRunner().invoke(main, [*base, "--month", "2025-06"])
    assert result.exit_code == 0, result.output
    assert "884.880000" in result.output and "7,200.000" in result.output
    as_json = CliRunner().invoke(main, [*base, "--month", "2025-06", "--json"])
    assert json.loads(as_json.output)["head"]["period"] == "2025-06"
    out = tmp_path / "june.xlsx"
    result = CliRunner().invoke(main, [*base, "--month", "2025-06", "--format", "xlsx",
                                       "--out", str(out)])
    assert result.exit_code == 0 and load_workbook(out)["Report"]["B1"].value.endswith("2025-06")
    bad = CliRunner().invoke(main, [*base, "--month", "2025-13"])
    assert bad.exit_code != 0 and "2025-13" in bad.output
    no_out = CliRunner().invoke(main, [*base, "--month", "2025-06", "--format", "xlsx"])
    assert no_out.exit_code != 0 and "--out" in no_out.output


def test_cli_day_report_still_works(tmp_path: Path) -> None:
    config, _ = cli_setup(tmp_path)
    result = CliRunner().invoke(main, ["receiver", "report", "--config", str(config),
                                       "--day", "2025-06-02"])
    assert result.exit_code == 0, result.output
