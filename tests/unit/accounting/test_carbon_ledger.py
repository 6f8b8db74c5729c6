"""The carbon ledger and the equipment register: loading, double-counting checks, atomic edits,
baseline recalculation and the deductions arithmetic (worked by hand below)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from cloud_receiver.accounting.equipment import grade1_share, load_equipment
from cloud_receiver.accounting.ledger import (
    add_entry,
    deductions,
    load_ledger,
    record_recalculation,
)
from nengtan.errors import ConfigError

LEDGER = """
[baseline]
year = 2021
emissions_t = 12000.0
output = 40000.0

[[green_electricity]]
id = "GE-2024-Q1"
for_year = 2024
mwh = 300.5
contract = "河南电力交易中心 绿电交易 2024Q1"

[[certificate]]
id = "GEC-2024-A"
for_year = 2024
count = 200
registry = "国家绿证核发交易系统"
serial_first = "GEC2024000101"
serial_last = "GEC2024000300"
vintage = 2024
retired_on = 2025-01-20

[[offset]]
id = "CCER-1"
kind = "CCER"
for_year = 2024
tco2 = 150.0
registry = "全国温室气体自愿减排注册登记系统"
registry_id = "CCER-41-2023-001"
serial_first = "CN41-0001"
serial_last = "CN41-0150"
vintage = 2023
retired_on = 2025-02-01

[[offset]]
id = "CCER-2023"
kind = "ccer"
for_year = 2023
tco2 = 10.0
registry = "全国温室气体自愿减排注册登记系统"
serial_first = "CN41-0151"
serial_last = "CN41-0160"
vintage = 2023
retired_on = 2024-02-01
"""


@pytest.fixture
def plant_dir(tmp_path: Path) -> Path:
    (tmp_path / "ledger.toml").write_text(LEDGER, encoding="utf-8")
    return tmp_path


def test_deductions_golden(plant_dir: Path) -> None:
    ledger = load_ledger(plant_dir)
    # 2024: green 300.5 MWh + 200 certificates (1 MWh each) = 500.5 MWh claimed.
    # Electricity used 2 000 000 kWh = 2 000 MWh, so all 500.5 MWh count.
    # × 0.5897 tCO2/MWh (Henan 2023 statistical) = 295.14485 t; offsets 150 t (2024 only).
    d = deductions(ledger, 2024, electricity_kwh=2_000_000, grid_factor="0.5897")
    assert d.green_mwh == Decimal("500.5") and d.usable_mwh == Decimal("500.5")
    assert d.green_t == Decimal("295.14485")
    assert d.offsets_t == 150
    assert d.total_t == Decimal("445.14485")
    assert set(d.entries) == {"GE-2024-Q1", "GEC-2024-A", "CCER-1"}
    assert "min(500.5 MWh claimed, 2000 MWh used)" in d.working


def test_green_electricity_is_capped_at_the_electricity_used(plant_dir: Path) -> None:
    # Only 400 000 kWh = 400 MWh used: 400 × 0.5366 = 214.64 t, not 500.5 × 0.5366.
    d = deductions(load_ledger(plant_dir), 2024, electricity_kwh=400_000, grid_factor=0.5366)
    assert d.usable_mwh == 400
    assert d.green_t == Decimal("214.64")


def test_an_absent_ledger_is_empty(tmp_path: Path) -> None:
    ledger = load_ledger(tmp_path)
    assert ledger.entries == () and ledger.baseline_on(date(2024, 1, 1)) is None
    assert deductions(ledger, 2024, 1000, 0.5).total_t == 0


def test_overlapping_serials_and_other_problems_are_all_reported(tmp_path: Path) -> None:
    (tmp_path / "ledger.toml").write_text(LEDGER + """
[[offset]]
id = "CCER-1"
kind = "forest"
for_year = 2024
tco2 = 20.0
registry = "全国温室气体自愿减排注册登记系统"
serial_first = "CN41-0140"
serial_last = "CN41-0159"
vintage = 2023

[[certificate]]
id = "GEC-bad"
for_year = 2024
count = 5
registry = "国家绿证核发交易系统"
serial_first = "GEC2024000001"
serial_last = "GEC2024000010"
vintage = 2024
retired_on = 2025-01-20
""", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_ledger(tmp_path)
    text = str(info.value)
    assert "offset[2].kind': 'forest' is not one of" in text
    assert "offset[2].retired_on': required" in text
    assert "certificate[1].count': 5 but the serial range holds 10 units" in text


def test_overlap_between_valid_entries_is_double_counting(tmp_path: Path) -> None:
    (tmp_path / "ledger.toml").write_text(LEDGER.replace('"CN41-0151"', '"CN41-0150"').replace(
        "tco2 = 10.0", "tco2 = 11.0"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"overlap those of 'CCER-1' \(double counting\)"):
        load_ledger(tmp_path)


def test_add_entry_validates_and_rewrites_atomically(plant_dir: Path) -> None:
    ledger = add_entry(plant_dir, "offset", {
        "id": "CCER-3", "kind": "ccer", "for_year": 2024, "tco2": 50.0,
        "registry": "全国温室气体自愿减排注册登记系统", "serial_first": "CN41-0200",
        "serial_last": "CN41-0249", "vintage": 2024, "retired_on": date(2025, 3, 1)})
    assert "CCER-3" in {e.id for e in ledger.entries}
    assert "CCER-3" in {e.id for e in load_ledger(plant_dir).entries}  # on disk too
    before = (plant_dir / "ledger.toml").read_bytes()
    with pytest.raises(ConfigError, match="overlap"):
        add_entry(plant_dir, "offset", {
            "id": "CCER-4", "kind": "ccer", "for_year": 2024, "tco2": 1.0,
            "registry": "全国温室气体自愿减排注册登记系统", "serial_first": "CN41-0249",
            "serial_last": "CN41-0249", "vintage": 2024, "retired_on": date(2025, 3, 1)})
    assert (plant_dir / "ledger.toml").read_bytes() == before  # a rejected edit changes nothing
    assert not list(plant_dir.glob(".ledger.*"))


def test_baseline_recalculation_applies_from_its_date(plant_dir: Path) -> None:
    record_recalculation(plant_dir, date(2024, 3, 1), 13500.0,
                         "acquired line 3 (structural change)", output=46000.0)
    ledger = load_ledger(plant_dir)
    assert ledger.baseline_on(date(2024, 2, 29)).emissions_t == 12000  # type: ignore[union-attr]
    now = ledger.baseline_on(date(2024, 3, 1))
    assert now is not None and now.emissions_t == 13500 and now.year == 2021
    assert now.reason.startswith("acquired") and now.output == 46000
    with pytest.raises(ConfigError, match="needs recorded_on"):
        record_recalculation(plant_dir, date(2024, 4, 1), 1.0, "")


REGISTER = """id,name,kind,efficiency_grade,in_service,rated_kw,node
M1,Press motor 1,motor,1,yes,75,line-1
M2,Press motor 2,motor,2,yes,75,line-1
M3,Fan motor,motor,1,yes,15,line-1
M4,Spare motor,motor,3,no,75,line-1
T1,Main transformer,transformer,1,yes,1000,site
T2,Aux transformer,transformer,0,yes,400,site
"""


def test_equipment_shares_golden(tmp_path: Path) -> None:
    (tmp_path / "equipment.csv").write_text(REGISTER, encoding="utf-8")
    register = load_equipment(tmp_path)
    motors = grade1_share(register, "motor")
    # in service: M1, M2, M3 (M4 is out of service); grade 1: M1, M3 → 2 / 3
    assert (motors.part, motors.whole, motors.units) == (2, 3, ("M1", "M2", "M3"))
    by_kw = grade1_share(register, "motor", "capacity")
    # (75 + 15) kW of (75 + 75 + 15) kW = 90 / 165
    assert (by_kw.part, by_kw.whole) == (90, 165)
    tx = grade1_share(register, "transformer")
    assert (tx.part, tx.whole) == (1, 2)  # T2 grade 0 (not graded) counts as not grade 1


def test_bad_register_rows_are_named_by_line(tmp_path: Path) -> None:
    (tmp_path / "equipment.csv").write_text(
        REGISTER + "M1,dup,motor,1,yes,1,x\nX9,odd,robot,4,maybe,-3,x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_equipment(tmp_path)
    text = str(info.value)
    assert "At line 8, id: 'M1' is listed twice" in text
    for part in ("At line 9, kind: 'robot'", "At line 9, efficiency_grade: '4'",
                 "At line 9, in_service: 'maybe'", "At line 9, rated_kw: '-3'"):
        assert part in text
