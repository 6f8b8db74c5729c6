"""``nengtan receiver ledger …``: adding entries with their provenance, errors that name the
option, safe re-runs (never a double count), the baseline and its recalculations."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloud_receiver.accounting.ledger import deductions, load_ledger
from cloud_receiver.accounting.ledger_cli import ledger
from cloud_receiver.cli import receiver

CERT = ["certificate", "--id", "GEC-2025-A", "--for-year", "2025", "--count", "200",
        "--registry", "国家绿证核发交易系统", "--serial-first", "GEC2025000101",
        "--serial-last", "GEC2025000300", "--vintage", "2025", "--retired-on", "2026-01-20"]
OFFSET = ["offset", "--id", "CCER-1", "--for-year", "2025", "--kind", "ccer", "--tco2", "150",
          "--registry", "全国温室气体自愿减排注册登记系统", "--serial-first", "CN41-0001",
          "--serial-last", "CN41-0150", "--vintage", "2024", "--retired-on", "2026-01-25",
          "--detail", "project=某风电项目", "--detail", "registry_id=CCER-41-2024-001"]
GREEN = ["green-electricity", "--id", "GE-2025-Q1", "--for-year", "2025", "--mwh", "300.5",
         "--detail", "contract=河南电力交易中心 2025Q1"]


def run(plant: Path, *args: str) -> Result:
    return CliRunner().invoke(receiver, ["ledger", args[0], "--plant", str(plant), *args[1:]])


def add(plant: Path, entry: list[str], *extra: str) -> Result:
    return run(plant, "add", *entry, *extra)


@pytest.mark.parametrize("name", sorted(ledger.commands))
def test_every_ledger_command_has_an_example(name: str) -> None:
    assert "Example:" in CliRunner().invoke(receiver, ["ledger", name, "-h"]).output


def test_add_each_section_then_list(tmp_path: Path) -> None:
    for entry in (GREEN, CERT, OFFSET):
        result = add(tmp_path, entry)
        assert result.exit_code == 0, result.output
        assert "added in" in result.output
    led = load_ledger(tmp_path)
    assert [(e.section, e.id) for e in led.entries] == [
        ("green_electricity", "GE-2025-Q1"), ("certificate", "GEC-2025-A"), ("offset", "CCER-1")]
    offset = led.entries[2]
    assert offset.detail == {"project": "某风电项目", "registry_id": "CCER-41-2024-001"}
    assert led.entries[0].detail == {"contract": "河南电力交易中心 2025Q1"}
    listed = json.loads(run(tmp_path, "list", "--json").output)
    # 300.5 MWh green + 200 certificates of 1 MWh = 500.5 MWh; offsets 150 tCO2
    assert listed["totals"] == {"2025": {"green_mwh": "500.5", "offsets_tco2": "150"}}
    assert listed["entries"][2]["retired_on"] == "2026-01-25"
    text = run(tmp_path, "list", "--year", "2025").output
    assert "total 2025: 500.5 MWh 绿电/绿证 claimed, 150 tCO2 offsets" in text
    assert "GEC2025000101…GEC2025000300" in text
    assert "no baseline" in text
    assert json.loads(run(tmp_path, "list", "--year", "2024", "--json").output)["entries"] == []


def test_re_running_an_add_changes_nothing_and_never_double_counts(tmp_path: Path) -> None:
    assert add(tmp_path, GREEN).exit_code == 0
    assert add(tmp_path, OFFSET).exit_code == 0
    before = (tmp_path / "ledger.toml").read_bytes()
    for entry in (GREEN, OFFSET):
        again = add(tmp_path, entry, "--json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.output)["outcome"] == "unchanged"
    assert (tmp_path / "ledger.toml").read_bytes() == before
    # 300.5 MWh × 0.5897 = 177.20485 t + 150 t, counted once
    d = deductions(load_ledger(tmp_path), 2025, electricity_kwh=1_000_000, grid_factor="0.5897")
    assert str(d.total_t) == "327.20485"


def test_conflicting_or_copied_entries_are_refused_and_nothing_is_written(
        tmp_path: Path) -> None:
    assert add(tmp_path, GREEN).exit_code == 0
    assert add(tmp_path, CERT).exit_code == 0
    before = (tmp_path / "ledger.toml").read_bytes()
    other = [x if x != "300.5" else "310" for x in GREEN]
    result = add(tmp_path, other)
    assert result.exit_code == 2
    assert "--id: 'GE-2025-Q1' is already green_electricity[0] with other values" in result.output
    copy = [x if x != "GE-2025-Q1" else "GE-2025-Q1-bis" for x in GREEN]
    result = add(tmp_path, copy)
    assert result.exit_code == 2 and "everything but the id equals green_electricity[0]" in (
        result.output)
    # The same certificates again under a new id: the serial ranges overlap.
    twice = [x if x != "GEC-2025-A" else "GEC-2025-B" for x in CERT]
    result = add(tmp_path, twice)
    assert result.exit_code == 2 and "overlap those of 'GEC-2025-A' (double counting)" in (
        result.output)
    reused = [x if x != "GE-2025-Q1" else "GEC-2025-A" for x in GREEN]
    result = add(tmp_path, reused)
    assert result.exit_code == 2 and "is already certificate[0]" in result.output
    assert (tmp_path / "ledger.toml").read_bytes() == before


def test_validation_errors_name_the_option(tmp_path: Path) -> None:
    # An offset without its retirement: the ledger's own check, named by option.
    result = add(tmp_path, OFFSET[:OFFSET.index("--retired-on")])
    assert result.exit_code == 2
    assert "--retired-on (offset[0].retired_on): required" in result.output
    no_kind = [x for x in OFFSET if x not in ("--kind", "ccer")]
    assert "--kind: required for offsets (one of carbon_inclusive, ccer," in add(
        tmp_path, no_kind).output
    # 5 certificates but the range holds 3 (101..103)
    result = add(tmp_path, ["certificate", "--id", "C", "--for-year", "2025", "--count", "5",
                            "--registry", "R", "--serial-first", "G101", "--serial-last", "G103",
                            "--vintage", "2025", "--retired-on", "2026-01-01"])
    assert "--count (certificate[0].count): 5 but the serial range holds 3 units" in result.output
    result = add(tmp_path, ["green-electricity", "--id", "G", "--for-year", "2025", "--tco2", "3",
                            "--serial-first", "A1", "--kind", "ccer", "--detail", "mwh=4"])
    for expected in ("--tco2: does not apply to green_electricity (it takes --mwh)",
                     "--mwh: required for green_electricity", "--kind: applies to offsets only",
                     "--serial-first: applies to certificates and offsets only",
                     "--detail 'mwh=4': expected KEY=VALUE with a key of its own"):
        assert expected in result.output
    result = add(tmp_path, ["green-electricity", "--id", "G", "--for-year", "2025", "--mwh", "-1"])
    assert "--mwh (green_electricity[0].mwh): must be positive" in result.output
    assert not (tmp_path / "ledger.toml").exists()


def test_a_broken_ledger_is_reported_before_any_edit(tmp_path: Path) -> None:
    (tmp_path / "ledger.toml").write_text("[[offset]]\nid = 'X'\n", encoding="utf-8")
    result = add(tmp_path, GREEN)
    assert result.exit_code == 2 and "At 'offset[0].for_year'" in result.output
    assert (tmp_path / "ledger.toml").read_text(encoding="utf-8") == "[[offset]]\nid = 'X'\n"


def test_baseline_and_recalculations(tmp_path: Path) -> None:
    early = run(tmp_path, "recalculate", "--recorded-on", "2025-03-01", "--emissions-t",
                "11800", "--reason", "line 3 closed")
    assert early.exit_code == 2 and "set the baseline year before recalculating" in early.output
    base = ["baseline", "--year", "2021", "--emissions-t", "12000", "--output", "40000"]
    assert run(tmp_path, *base).exit_code == 0
    assert "unchanged" in run(tmp_path, *base).output
    other = run(tmp_path, "baseline", "--year", "2021", "--emissions-t", "12500")
    assert other.exit_code == 2 and "ledger recalculate" in other.output
    recalc = ["recalculate", "--recorded-on", "2025-03-01", "--emissions-t", "11800",
              "--reason", "line 3 closed"]
    assert run(tmp_path, *recalc).exit_code == 0
    again = run(tmp_path, *recalc, "--json")
    assert json.loads(again.output)["outcome"] == "unchanged"
    clash = run(tmp_path, *[x if x != "11800" else "11700" for x in recalc])
    assert clash.exit_code == 2 and "record a correction on a later day" in clash.output
    led = load_ledger(tmp_path)
    assert [(b.recorded_on, str(b.emissions_t)) for b in led.baselines] == [
        (None, "12000.0"), (led.baselines[1].recorded_on, "11800.0")]
    assert led.baseline_on(date(2025, 2, 28)).emissions_t == 12000  # type: ignore[union-attr]
    assert led.baseline_on(date(2025, 12, 31)).emissions_t == 11800  # type: ignore[union-attr]
    listed = run(tmp_path, "list").output
    assert "baseline 2021: 12000 tCO2, output 40000 (original)" in listed
    assert "recalculated 2025-03-01: line 3 closed" in listed


def test_a_voided_entry_is_kept_counted_nowhere_and_frees_its_serials(tmp_path: Path) -> None:
    assert add(tmp_path, CERT).exit_code == 0
    assert add(tmp_path, GREEN).exit_code == 0
    # Before: 200 certificates + 300.5 MWh green electricity = 500.5 MWh claimed for 2025;
    # used 1000 MWh, so all of it counts: 500.5 MWh × 0.5 tCO2/MWh = 250.25 t.
    assert deductions(load_ledger(tmp_path), 2025, 1_000_000, 0.5).green_t == 250.25
    voided = run(tmp_path, "void", "GEC-2025-A", "--reason", "wrong registry", "--on",
                 "2026-02-01", "--json")
    assert voided.exit_code == 0, voided.output
    assert json.loads(voided.output)["outcome"] == "voided"
    led = load_ledger(tmp_path)
    assert [e.id for e in led.entries] == ["GE-2025-Q1"]
    assert [(e.id, e.voided_on, e.void_reason) for e in led.voided] == [
        ("GEC-2025-A", date(2026, 2, 1), "wrong registry")]
    # After: only the 300.5 MWh of green electricity: 300.5 × 0.5 = 150.25 t.
    assert deductions(led, 2025, 1_000_000, 0.5).green_t == 150.25
    # Voiding again with the same reason changes nothing; another reason is refused.
    again = run(tmp_path, "void", "GEC-2025-A", "--reason", "wrong registry", "--json")
    assert json.loads(again.output)["outcome"] == "unchanged"
    before = (tmp_path / "ledger.toml").read_bytes()
    other = run(tmp_path, "void", "GEC-2025-A", "--reason", "another", "--on", "2026-03-01")
    assert other.exit_code == 2 and "a void is final" in other.output
    assert (tmp_path / "ledger.toml").read_bytes() == before
    # The corrected entry takes the same serial range under a new id.
    fixed = [("GEC-2025-B" if a == "GEC-2025-A" else a) for a in CERT]
    assert add(tmp_path, fixed).exit_code == 0
    listed = json.loads(run(tmp_path, "list", "--json").output)
    assert [e["id"] for e in listed["entries"]] == ["GE-2025-Q1", "GEC-2025-B"]
    assert listed["voided"][0]["reason"] == "wrong registry"
    assert run(tmp_path, "void", "NOPE", "--reason", "x").exit_code == 2
