"""Interval energy from counters: replacements, rollover, gaps and negative deltas (golden).

Every month below is June 2025 in Asia/Shanghai: 30 days × 96 quarter-hours = 2880 buckets.
Readings every 15 minutes from 06-01 00:00 to 07-01 00:00 inclusive make 2881 readings and 2880
intervals, each closing one June bucket.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accounting_helpers import JULY, JUNE, MINUTE, PLANT_TOML, Feeder, local_ms, plant_dir

from cloud_receiver.accounting.energy import bucket_starts, interval_energy
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.store import Store

Q = 15 * MINUTE
BUCKETS = 30 * 96  # 2880


def rollover_plant(tmp_path: Path, modulus: float = 10000.0) -> Path:
    text = PLANT_TOML.replace('meter = "m1"\n', f'meter = "m1"\nrollover_at = {modulus}\n')
    return plant_dir(tmp_path, text)


REPLACED_0615 = """
[[replacement]]
point = "line1-feeder"
at = 2025-06-15T10:05:00+08:00
old_final = 6384.4
new_initial = 0.0
note = "CT fault, meter swapped"
"""


def feed_replaced_m2(feeder: Feeder, new_meter: str = "m2") -> None:
    """m2 counts 1 kWh per 15 min. The old meter reads 5000 at 06-01 00:00 and 6384 at
    06-15 10:00 (k = 14 × 96 + 40 = 1384 quarter-hours later); it is removed at 10:05 reading
    6384.4. The new meter starts at 0.0 and reads 0.6 at 10:15, then +1 per quarter-hour up to
    07-01 00:00 (k = 2880): 0.6 + (2880 - 1385) = 1495.6."""
    feeder.add("m2", [(JUNE + k * Q, 5000.0 + k) for k in range(0, 1385)])
    feeder.add(new_meter, [(JUNE + k * Q, 0.6 + (k - 1385)) for k in range(1385, 2881)])


def test_bucket_starts_of_june() -> None:
    from accounting_helpers import TZ
    assert len(bucket_starts(JUNE, JULY, "15m", TZ)) == BUCKETS
    days = bucket_starts(JUNE, JULY, "1d", TZ)
    assert len(days) == 30 and days[0] == JUNE and days[-1] == JULY - 86_400_000


def test_steady_month_is_complete(store: Store, feeder: Feeder, plant_path: Path) -> None:
    feeder.steady("m1", JUNE, JULY, Q, 1000.0, 2.5)
    result = interval_energy(store, load_plant(plant_path), JUNE, JULY)
    p = result.points["incomer"]
    assert p.total == pytest.approx(2880 * 2.5)  # 7200 kWh
    assert p.completeness == 100.0 and p.gaps == [] and p.events == []
    # the line feeder has no data at all: one gap over the whole month, 0 % complete
    line = result.points["line1-feeder"]
    assert line.total == 0 and line.completeness == 0.0
    assert [(g.start_ms, g.end_ms, g.empty) for g in line.gaps] == [(JUNE, JULY, BUCKETS)]


def test_daily_buckets_sum_to_the_quarter_hours(store: Store, feeder: Feeder,
                                                plant_path: Path) -> None:
    feeder.steady("m1", JUNE, JULY, Q, 1000.0, 2.5)
    daily = interval_energy(store, load_plant(plant_path), JUNE, JULY, "1d").points["incomer"]
    assert sorted(daily.amounts.values()) == [96 * 2.5] * 30  # 240 kWh a day
    assert daily.completeness == 100.0


def test_replacement_mid_month_bridges_the_jump(store: Store, feeder: Feeder,
                                               tmp_path: Path) -> None:
    feed_replaced_m2(feeder)
    plant = load_plant(plant_dir(tmp_path, replacements=REPLACED_0615))
    p = interval_energy(store, plant, JUNE, JULY).points["line1-feeder"]
    # old meter 6384 - 5000 = 1384, then 6384.4 - 6384 = 0.4 until the swap, new meter
    # 0.6 - 0.0 = 0.6 until 10:15, then 1495.6 - 0.6 = 1495: 1384 + 0.4 + 0.6 + 1495 = 2880
    assert p.total == pytest.approx(1384 + 0.4 + 0.6 + 1495)
    assert [e.kind for e in p.events] == ["replacement", "replacement"]
    assert [round(e.amount, 9) for e in p.events] == [0.4, 0.6]
    assert p.negatives == 0 and p.completeness == 100.0
    # the quarter-hour holding the swap got exactly what both meters counted in it
    swap = local_ms("2025-06-15T10:00")
    assert p.amounts[swap] == pytest.approx(0.4 + 0.6)


def test_without_the_replacement_record_the_jump_is_flagged_not_counted(
        store: Store, feeder: Feeder, plant_path: Path) -> None:
    feed_replaced_m2(feeder)
    p = interval_energy(store, load_plant(plant_path), JUNE, JULY).points["line1-feeder"]
    # 6384 → 0.6 is counted as 0: 1384 + (1495.6 - 0.6) = 2879, one negative delta flagged
    assert p.total == pytest.approx(1384 + 1495)
    assert [(e.kind, e.previous, e.current) for e in p.events] == [("negative", 6384.0, 0.6)]


def test_replacement_onto_another_meter_id(store: Store, feeder: Feeder, tmp_path: Path) -> None:
    feed_replaced_m2(feeder, new_meter="m3")
    record = REPLACED_0615 + 'new_meter = "m3"\n'
    plant = load_plant(plant_dir(tmp_path, replacements=record))
    p = interval_energy(store, plant, JUNE, JULY).points["line1-feeder"]
    assert p.total == pytest.approx(1384 + 0.4 + 0.6 + 1495)
    assert p.completeness == 100.0


def test_counter_rollover(store: Store, feeder: Feeder, tmp_path: Path) -> None:
    # 9000 + 2.5 k wraps at 10000 when k = 400: 9997.5 → 0.0
    feeder.add("m1", [(JUNE + k * Q, (9000.0 + 2.5 * k) % 10000.0) for k in range(2881)])
    p = interval_energy(store, load_plant(rollover_plant(tmp_path)), JUNE, JULY).points["incomer"]
    assert p.total == pytest.approx(2880 * 2.5)  # 10000 - 9997.5 + 0.0 = 2.5 at the wrap
    assert [(e.kind, e.previous, e.current, e.amount) for e in p.events] == [
        ("rollover", 9997.5, 0.0, 2.5)]


def test_backwards_far_from_the_modulus_is_a_reset_not_a_rollover(
        store: Store, feeder: Feeder, tmp_path: Path) -> None:
    # 5000 → 10 on a 10000 register would be a 5010 kWh wrap in 15 minutes: implausible
    feeder.add("m1", [(JUNE, 4990.0), (JUNE + Q, 5000.0), (JUNE + 2 * Q, 10.0),
                      (JUNE + 3 * Q, 12.0)])
    p = interval_energy(store, load_plant(rollover_plant(tmp_path)), JUNE, JULY).points["incomer"]
    assert p.total == pytest.approx(10.0 + 2.0)
    assert [e.kind for e in p.events] == ["negative"]


def test_six_hour_gap_is_reported_not_invented(store: Store, feeder: Feeder,
                                               plant_path: Path) -> None:
    gap_from, gap_to = local_ms("2025-06-10T10:00"), local_ms("2025-06-10T16:00")
    feeder.add("m1", [(JUNE + k * Q, 1000.0 + 2.5 * k) for k in range(2881)
                      if not gap_from < JUNE + k * Q < gap_to])
    p = interval_energy(store, load_plant(plant_path), JUNE, JULY).points["incomer"]
    # The counter kept counting through the gap, so the month is still 2880 × 2.5 = 7200 kWh;
    # the 6 h interval's 24 × 2.5 = 60 kWh is booked where it ends (15:45–16:00), not spread.
    assert p.total == pytest.approx(7200.0)
    assert p.amounts[gap_to - Q] == pytest.approx(60.0)
    assert all(s not in p.amounts for s in range(gap_from, gap_to - Q, Q))
    assert [(g.start_ms, g.end_ms, g.buckets, g.empty, g.long) for g in p.gaps] == [
        (gap_from, gap_to, 24, 23, 1)]
    assert p.gaps[0].hours == 6.0
    assert p.completeness == pytest.approx(100 * (2880 - 24) / 2880)  # 99.1667 %


def test_replacement_rollover_and_gap_in_one_month(store: Store, feeder: Feeder,
                                                   tmp_path: Path) -> None:
    """The issue's must-show: all three at once, on two points of one plant."""
    gap_from, gap_to = local_ms("2025-06-20T02:00"), local_ms("2025-06-20T08:00")
    feeder.add("m1", [(JUNE + k * Q, (9000.0 + 2.5 * k) % 10000.0) for k in range(2881)
                      if not gap_from < JUNE + k * Q < gap_to])
    feed_replaced_m2(feeder)
    directory = rollover_plant(tmp_path)
    (directory / "replacements.toml").write_text(REPLACED_0615, encoding="utf-8")
    plant = load_plant(directory)
    result = interval_energy(store, plant, JUNE, JULY)
    incomer, line = result.points["incomer"], result.points["line1-feeder"]
    assert incomer.total == pytest.approx(7200.0)  # 2880 × 2.5, wrap and gap included
    assert line.total == pytest.approx(2880.0)  # 1384 + 0.4 + 0.6 + 1495
    assert [g.hours for g in incomer.gaps] == [6.0] and line.gaps == []
    assert sorted(e.kind for e in incomer.events + line.events) == [
        "replacement", "replacement", "rollover"]


def test_buckets_not_yet_due_do_not_count_against_completeness(
        store: Store, feeder: Feeder, plant_path: Path) -> None:
    now = local_ms("2025-06-11T00:00")
    feeder.steady("m1", JUNE, now, Q, 0.0, 1.0)
    p = interval_energy(store, load_plant(plant_path), JUNE, JULY, until_ms=now).points["incomer"]
    assert p.expected == 10 * 96 and p.completeness == 100.0 and p.total == 960.0
