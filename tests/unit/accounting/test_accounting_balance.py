"""Meter balance (parent vs sub-meters) and GB 17167 coverage, with the arithmetic written out."""

from __future__ import annotations

from pathlib import Path

import pytest
from accounting_helpers import HOUR, JUNE, MINUTE, PLANT_TOML, Feeder, plant_dir

from cloud_receiver.accounting.balance import (
    PointAmount,
    balance,
    coverage,
    coverage_table,
    load_requirements,
)
from cloud_receiver.accounting.energy import interval_energy
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.store import Store
from nengtan.errors import ConfigError

DAY_END = JUNE + 24 * HOUR


def amounts_for_day(store: Store, plant_path: Path) -> dict[str, PointAmount]:
    plant = load_plant(plant_path)
    energy = interval_energy(store, plant, JUNE, DAY_END, "15m")
    return {pid: PointAmount(pe.total, pe.completeness) for pid, pe in energy.points.items()}


def test_balance_loss_percent_golden(store: Store, feeder: Feeder, plant_path: Path) -> None:
    # 97 readings 15 min apart from 00:00 to 24:00: 96 intervals.
    feeder.steady("m1", JUNE, DAY_END, 15 * MINUTE, 1000.0, 10.0)  # 96 × 10.0 = 960 kWh
    feeder.steady("m2", JUNE, DAY_END, 15 * MINUTE, 500.0, 9.5)    # 96 × 9.5 = 912 kWh
    amounts = amounts_for_day(store, plant_path)
    plant = load_plant(plant_path)
    (row,) = balance(plant, amounts, threshold_pct=4.0)
    # loss = 960 - 912 = 48 kWh; 48 / 960 × 100 = 5.0 %
    assert (row.parent, row.children, row.parent_amount, row.children_amount) == (
        "incomer", ("line1-feeder",), 960.0, 912.0)
    assert (row.loss, row.loss_pct) == (48.0, 5.0)
    assert row.status == "deviation" and "loss 5.00 % exceeds ±4 %" in row.detail
    # At exactly the threshold it is not a deviation (the rule is strictly above).
    assert balance(plant, amounts, threshold_pct=5.0)[0].status == "ok"


def test_sub_meters_reading_more_than_the_parent_is_a_deviation(plant_path: Path) -> None:
    plant = load_plant(plant_path)
    amounts = {"incomer": PointAmount(100.0, 100.0), "line1-feeder": PointAmount(110.0, 100.0)}
    (row,) = balance(plant, amounts, threshold_pct=5.0)
    # loss = 100 - 110 = -10; -10 / 100 × 100 = -10 %
    assert (row.loss, row.loss_pct, row.status) == (-10.0, -10.0, "deviation")
    assert "sub-meters read more than their parent" in row.detail


def test_a_gap_makes_the_balance_incomplete_not_a_loss(store: Store, feeder: Feeder,
                                                       plant_path: Path) -> None:
    feeder.steady("m1", JUNE, DAY_END, 15 * MINUTE, 1000.0, 10.0)
    # The sub-meter is silent from 06:00 to 12:00: its 12:00 reading closes a 6-hour interval.
    feeder.add("m2", [(JUNE + i * 15 * MINUTE, 500.0 + 9.5 * i) for i in range(97)
                      if not 24 < i < 48])
    amounts = amounts_for_day(store, plant_path)
    # 96 buckets due; 06:00-12:00 is 24 buckets without complete data: 72 / 96 = 75 %.
    assert amounts["line1-feeder"].completeness == 75.0
    (row,) = balance(load_plant(plant_path), amounts, threshold_pct=1.0)
    assert row.status == "incomplete"
    assert row.detail == "not judged: data below 100 % for line1-feeder (75 %)"
    # A point with no data at all is named too.
    (row,) = balance(load_plant(plant_path), {"incomer": amounts["incomer"]}, threshold_pct=1.0)
    assert (row.status, row.children_amount) == ("incomplete", None)
    assert "line1-feeder (no data)" in row.detail


def test_no_consumption_is_not_judged(plant_path: Path) -> None:
    plant = load_plant(plant_path)
    amounts = {"incomer": PointAmount(0.0, 100.0), "line1-feeder": PointAmount(0.0, 100.0)}
    assert balance(plant, amounts, threshold_pct=5.0)[0].status == "no_consumption"


TWO_WORKSHOPS = PLANT_TOML + """
[[node]]
id = "ws2"
kind = "workshop"
parent = "site1"

[[node]]
id = "kiln"
kind = "equipment"
parent = "ws2"

[[point]]
id = "kiln-motor"
node = "kiln"
gateway = "gw-acc-01"
meter = "m3"
level = 3
energy_type = "electricity"
use = "production"
parent = "incomer"
"""

REQUIRED = """
[[required]]
node = "press1"
energy_type = "electricity"
level = 3
reason = "main equipment: 160 kW press"
"""


def test_coverage_per_level_golden(tmp_path: Path) -> None:
    plant = load_plant(plant_dir(tmp_path, TWO_WORKSHOPS, extra={"metering.toml": REQUIRED}))
    declared = load_requirements(plant)
    rows = {(r.energy_type, r.level): r for r in coverage(plant, declared)}
    assert set(rows) == {("electricity", 1), ("electricity", 2), ("electricity", 3)}
    # Level 1: the enterprise's boundary, metered by the site incomer: 1 / 1 = 100 % (need 100).
    assert (rows["electricity", 1].required, rows["electricity", 1].metered) == (1, 1)
    assert rows["electricity", 1].ok is True
    # Level 2: ws1 (metered through its line's level-2 feeder) and ws2 (only a level-3 meter
    # below it): 1 / 2 = 50 % against 100 % required.
    two = rows["electricity", 2]
    assert (two.required, two.metered, two.ratio_pct, two.required_pct, two.ok, two.missing) == (
        2, 1, 50.0, 100.0, False, ("ws2",))
    # Level 3: the kiln motor (metered) and the declared press (not): 1 / 2 = 50 % (need 95).
    three = rows["electricity", 3]
    assert (three.required, three.metered, three.ratio_pct, three.required_pct, three.missing) == (
        2, 1, 50.0, 95.0, ("press1",))
    assert three.table_version == coverage_table().version == "gb17167_coverage.toml@gb17167-2006-u1"


def test_required_positions_are_validated(tmp_path: Path) -> None:
    bad = """
[[required]]
node = "nowhere"
energy_type = "plasma"
level = 4
"""
    plant = load_plant(plant_dir(tmp_path, extra={"metering.toml": bad}))
    with pytest.raises(ConfigError) as info:
        load_requirements(plant)
    assert info.value.problems == (
        "At 'required[0].node': 'nowhere' is not a node of the plant model",
        "At 'required[0].energy_type': 'plasma' is not one of electricity, natural_gas, steam,"
        " heat, water, raw_coal, coke, diesel, gasoline, fuel_oil, lpg, lng",
        "At 'required[0].level': expected 1, 2 or 3, got 4",
    )
