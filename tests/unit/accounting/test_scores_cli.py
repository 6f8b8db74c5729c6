"""``nengtan receiver scores`` end to end over a SQLite store filled with readings, and the
scheme section of the annual report (``receiver report --year``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from accounting_helpers import plant_dir
from click.testing import CliRunner, Result
from openpyxl import load_workbook
from scores_helpers import receiver_config, scheme_plant

from nengtan.cli import main


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    return receiver_config(tmp_path), scheme_plant(tmp_path)


def scores(config: Path, plant: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["receiver", "scores", "--config", str(config), "--plant",
                                     str(plant), "--year", "2025", *args])


def test_help_has_an_example() -> None:
    assert "Example:" in CliRunner().invoke(main, ["receiver", "scores", "-h"]).output


def test_text_shows_inputs_formula_and_points(setup: tuple[Path, Path]) -> None:
    result = scores(*setup)
    assert result.exit_code == 0, result.output
    out = result.output
    # (23.588 − 11.794) ÷ 23.588 = 0.5 → 0.5 ÷ 0.9 × 15 = 8.33 → 8
    assert "zero_carbon.self_reduction  自主减排 / 自主减排量: 8 / 15 points" in out
    assert "  total = 23.588  [derived] ledger.toml baseline year 2021" in out
    assert ("formula: ratio = 11.794 ÷ 23.588 = 0.5; min(0.5 ÷ 0.9, 1) × 15 = 8.333333 → "
            "rounded half-up = 8") in out
    assert "  previous = 120  [entered] entered in scheme_inputs.toml at" in out
    assert "super_efficiency.transformer_share  装备: 在用一级能效变压器占比: not computable" in out
    assert "“零碳”工厂评分表（2025 年）— 可计算条目已预填" in out
    assert "“超级能效”工厂评分表（2025 年）— 可计算条目已预填" in out


def test_json_and_scheme_filter(setup: tuple[Path, Path]) -> None:
    result = scores(*setup, "--scheme", "zero_carbon", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [i["item"] for i in data["items"]] == ["self_reduction", "intensity_decline",
                                                  "offset_ratio"]
    assert [t["title"][:6] for t in data["tables"]] == ["“零碳”工厂"]
    offset = data["items"][2]
    # (0.5 + 1) MWh × 0.5897 + 6 = 6.88455 t; ÷ 11.794 = 0.5837… × 10 → 5.84
    assert offset["score"]["points"] == "5.84"
    assert offset["inputs"][0] == {
        "name": "offsets", "value": "6.88455", "origin": "derived",
        "provenance": "ledger.toml: green = min(1.5 MWh claimed, 20 MWh used) × 0.5897 tCO2/MWh"
                      " = 0.88455 t; offsets retired for 2025 = 6 = 6 t (entries: GE-2025-1, "
                      "GEC-2025-A, CCER-1)"}
    assert data["deductions"]["total_t"] == "6.88455"


def test_csv_and_html_files(setup: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    result = scores(*setup, "--format", "csv", "--out", str(out))
    assert result.exit_code == 0 and f"wrote {out}" in result.output
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    by_item = {r[1]: r for r in rows if len(r) > 3 and r[0] in ("zero_carbon",
                                                                "super_efficiency")}
    # 1 966.4 kgce ÷ 20 t = 98.32 kgce/t, 1.68 % under 100 → 16 of 25
    assert by_item["unit_product_energy"][3:5] == ["16", "25"]
    assert by_item["transformer_share"][3] == "" and "not computable" in by_item[
        "transformer_share"][6]
    assert ["# “超级能效”工厂评分表（2025 年）— 可计算条目已预填"] in rows
    page = tmp_path / "scores.html"
    assert scores(*setup, "--format", "html", "--out", str(page)).exit_code == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and "<caption>“零碳”工厂评分表（2025 年）" in text


def test_a_wrong_inputs_file_stops_the_scores_with_its_path(setup: tuple[Path, Path]) -> None:
    config, plant = setup
    (plant / "scheme_inputs.toml").write_text("[2025.zero_carbon.offset_ratio]\nresidual = true\n",
                                              encoding="utf-8")
    result = scores(config, plant)
    assert result.exit_code == 2
    assert "At '2025.zero_carbon.offset_ratio.residual': expected a number, got True" in (
        result.output)


def annual(config: Path, plant: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["receiver", "report", "--config", str(config), "--plant",
                                     str(plant), "--year", "2025", *args])


def test_the_annual_report_carries_the_scheme_tables(setup: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    result = annual(*setup, "--json")
    assert result.exit_code == 0, result.output
    titles = [t["title"] for t in json.loads(result.output)["tables"]]
    assert titles[-3:] == ["Scheme scores 2025 (rules hn-2024-196-seed-1)",
                           "“零碳”工厂评分表（2025 年）— 可计算条目已预填",
                           "“超级能效”工厂评分表（2025 年）— 可计算条目已预填"]
    scheme = json.loads(result.output)["tables"][-3]
    points = {row[1]: row[3] for row in scheme["rows"]}
    assert points["self_reduction"] == "8" and points["offset_ratio"] == "5.84"
    text = annual(*setup).output
    assert "Scheme scores 2025" in text and "| 自主减排量 |" in text
    out = tmp_path / "2025.xlsx"
    assert annual(*setup, "--format", "xlsx", "--out", str(out)).exit_code == 0
    assert "Scheme scores 2025" in load_workbook(out).sheetnames
    month = CliRunner().invoke(main, ["receiver", "report", "--config", str(setup[0]), "--plant",
                                      str(setup[1]), "--month", "2025-06", "--json"])
    assert all("Scheme" not in t["title"] for t in json.loads(month.output)["tables"])


def test_no_scheme_data_no_section_and_a_broken_file_does_not_stop_the_report(
        tmp_path: Path) -> None:
    config = receiver_config(tmp_path)
    bare = plant_dir(tmp_path)  # plant.toml only: nothing can be scored
    result = annual(config, bare, "--json")
    assert result.exit_code == 0, result.output
    assert all("Scheme" not in t["title"] for t in json.loads(result.output)["tables"])
    (bare / "ledger.toml").write_text("[[offset]]\nid = 'X'\n", encoding="utf-8")
    result = annual(config, bare, "--json")
    assert result.exit_code == 0, result.output
    last = json.loads(result.output)["tables"][-1]
    assert last["title"] == "Scheme scores 2025"
    assert "not computed:" in last["rows"][0][0] and "offset[0].for_year" in last["rows"][0][0]
