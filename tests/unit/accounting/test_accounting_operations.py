"""Unit-product intensity from stored counters, per shift, day and month, and the benchmark
comparison: golden figures with the arithmetic written out."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from accounting_helpers import HOUR, JUNE, MINUTE, Feeder, plant_dir

from cloud_receiver.accounting.benchmarks import (
    benchmarks,
    compare,
    compare_product,
    parse_table,
)
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.accounting.operations import (
    benchmark_rows,
    load_products,
    month_correlation,
    month_intensities,
    node_points,
)
from cloud_receiver.store import Store
from nengtan.errors import ConfigError, NengtanError

KGCE = 0.1229  # kgce/kWh, GB/T 2589-2020 当量值 (coal.toml)
CO2 = 0.5897  # kgCO2/kWh, statistical regime, Henan 2023 (grid_co2.toml)
STEP = 15 * MINUTE

OUTPUT = """date,node,shift,product,quantity,unit
2025-06-01,line1,1,clinker,10,t
2025-06-01,line1,2,clinker,25,t
2025-06-01,line1,3,clinker,17.5,t
2025-06-01,site1,,clinker,1,t
"""
PRODUCTS = '[products.clinker]\nbenchmark = "cement_clinker"\n'


def feed_day(feeder: Feeder, *, gap: bool = False) -> None:
    # Incomer m1: 10 kWh per 15 min all day: 96 × 10 = 960 kWh.
    feeder.steady("m1", JUNE, JUNE + 24 * HOUR, STEP, 0.0, 10.0)
    # Line feeder m2: 5 kWh per 15 min in shift 1 (00-08), 10 in shift 2, 7.5 in shift 3.
    values, v = [], 0.0
    for i in range(97):
        values.append((JUNE + i * STEP, v))
        v += 5.0 if i < 32 else 10.0 if i < 64 else 7.5
    if gap:  # silent from 16:00 to 22:00 (index 64 is 16:00, 88 is 22:00)
        values = [x for i, x in enumerate(values) if not 64 < i < 88]
    feeder.add("m2", values)


def test_node_energy_counts_each_flow_once(plant_path: Path) -> None:
    plant = load_plant(plant_path)
    # site1 holds the incomer and, below it, the line feeder whose parent is the incomer.
    assert [p.id for p in node_points(plant, "site1")] == ["incomer"]
    assert [p.id for p in node_points(plant, "line1")] == ["line1-feeder"]
    assert [p.id for p in node_points(plant, "ent")] == ["incomer"]


def test_intensity_per_shift_golden(tmp_path: Path, store: Store, feeder: Feeder) -> None:
    plant = load_plant(plant_dir(tmp_path, extra={"output.csv": OUTPUT}))
    feed_day(feeder)
    rows = month_intensities(store, plant, date(2025, 6, 1), "shift")
    got = [(u.period, u.output, u.kgce, u.kgco2, u.kgce_per_unit, u.kgco2_per_unit,
            u.completeness) for u in rows]
    assert got == [
        # shift 1: 32 buckets × 5 kWh = 160 kWh; 160 × 0.1229 = 19.664 kgce; 160 × 0.5897 =
        # 94.352 kgCO2; per 10 t: 1.9664 kgce/t and 9.4352 kgCO2/t.
        ("2025-06-01/1", 10.0, pytest.approx(19.664), pytest.approx(94.352),
         pytest.approx(1.9664), pytest.approx(9.4352), 100.0),
        # shift 2: 32 × 10 = 320 kWh → 39.328 kgce, 188.704 kgCO2; per 25 t: 1.57312, 7.54816.
        ("2025-06-01/2", 25.0, pytest.approx(39.328), pytest.approx(188.704),
         pytest.approx(1.57312), pytest.approx(7.54816), 100.0),
        # shift 3: 32 × 7.5 = 240 kWh → 29.496 kgce, 141.528 kgCO2; per 17.5 t: 1.685486…,
        # 8.087314….
        ("2025-06-01/3", 17.5, pytest.approx(240 * KGCE), pytest.approx(240 * CO2),
         pytest.approx(240 * KGCE / 17.5), pytest.approx(240 * CO2 / 17.5), 100.0),
    ]
    assert rows[2].kgce_per_unit == pytest.approx(1.6854857, abs=1e-7)


def test_a_six_hour_gap_keeps_the_total_and_lowers_completeness(
        tmp_path: Path, store: Store, feeder: Feeder) -> None:
    plant = load_plant(plant_dir(tmp_path, extra={"output.csv": OUTPUT}))
    feed_day(feeder, gap=True)
    shift3 = month_intensities(store, plant, date(2025, 6, 1), "shift")[2]
    # The 22:00 reading closes one 16:00-22:00 interval: the counter difference is still
    # 32 × 7.5 = 240 kWh, nothing invented, but 24 of the shift's 32 buckets (16:00-22:00)
    # have no complete data: 8 / 32 = 25 %.
    assert shift3.kgce == pytest.approx(240 * KGCE)
    assert shift3.completeness == 25.0


def test_day_and_month_intensity_and_benchmark_golden(tmp_path: Path, store: Store,
                                                      feeder: Feeder) -> None:
    plant = load_plant(plant_dir(tmp_path, extra={"output.csv": OUTPUT,
                                                  "products.toml": PRODUCTS}))
    feed_day(feeder)
    day = {u.node: u for u in month_intensities(store, plant, date(2025, 6, 1), "day")}
    # line1: 160 + 320 + 240 = 720 kWh → 88.488 kgce over 10 + 25 + 17.5 = 52.5 t.
    assert (day["line1"].output, day["line1"].kgce) == (52.5, pytest.approx(88.488))
    assert day["line1"].kgce_per_unit == pytest.approx(88.488 / 52.5)  # 1.68549 kgce/t
    # site1: only the incomer counts (the feeder is below it): 960 kWh → 117.984 kgce per 1 t.
    assert day["site1"].kgce_per_unit == pytest.approx(117.984)
    month = {u.node: u for u in month_intensities(store, plant, date(2025, 6, 1), "month")}
    # The month holds one day of data: 96 of 30 × 96 = 2880 buckets, 3.33 % complete.
    assert month["site1"].period == "2025-06"
    assert month["site1"].completeness == pytest.approx(100 * 96 / 2880)
    rows = {r.intensity.node: r for r in benchmark_rows(list(day.values()),
                                                        load_products(plant))}
    # Clinker benchmark 100, baseline 117 kgce/t (GB 16780-2021 levels 100/107/117).
    site = rows["site1"].comparison
    assert site is not None
    # 117.984 > 117: below the baseline; gap 117.984 - 100 = 17.984 kgce/t = 17.984 %.
    assert (site.classification, site.label, site.limit_level) == (
        "below_baseline", "未达基准水平", None)
    assert (site.gap, site.gap_pct) == (pytest.approx(17.984), pytest.approx(17.984))
    line = rows["line1"].comparison
    assert line is not None and line.classification == "benchmark" and line.limit_level == 1


def test_compare_classifies_against_benchmark_baseline_and_levels() -> None:
    clinker = benchmarks()["cement_clinker"]
    # 100 is the benchmark itself: at the benchmark (boundaries are inclusive).
    assert (compare(100.0, clinker).classification, compare(100.0, clinker).gap) == ("benchmark", 0.0)
    # 104: between benchmark 100 and baseline 117; limit level 2 (<= 107); gap 4 = 4 %.
    c = compare(104.0, clinker)
    assert (c.classification, c.limit_level, c.gap, c.gap_pct) == ("between", 2, 4.0, 4.0)
    assert compare(117.0, clinker).classification == "between"
    # Negative values (converter process): -25 is worse than the -30 benchmark, better than
    # the -10 baseline; gap -25 - (-30) = 5 kgce/t; no percent of a negative benchmark.
    converter = compare(-25.0, benchmarks()["converter"])
    assert (converter.classification, converter.gap, converter.gap_pct) == ("between", 5.0, None)
    assert c.as_dict()["table_version"] == "benchmarks.toml@2023-v1"
    with pytest.raises(NengtanError, match="in kgce/t, the value in kWh/t"):
        compare_product(50.0, "cement_clinker", "kWh/t")
    with pytest.raises(NengtanError, match="no benchmark for product 'brick'"):
        compare_product(50.0, "brick", "kgce/t")


def test_benchmark_table_problems_are_all_reported() -> None:
    doc = {"current": "v1", "versions": {"v1": {"products": {
        "a": {"name": "A", "indicator": "x", "unit": "kgce/t", "benchmark": 120,
              "baseline": 100, "source": "s", "status": "V"},
        "b": {"name": "B", "indicator": "x", "unit": "kgce/t", "benchmark": "100",
              "baseline": 110, "source": "s", "status": "maybe", "colour": 1},
    }}}}
    with pytest.raises(ConfigError) as info:
        parse_table(doc, "bench.toml")
    assert info.value.problems == (
        "At 'versions.v1.products.a': benchmark 120 is above baseline 100; lower is better,"
        " so it must not be",
        "At 'versions.v1.products.b': unknown key(s) colour",
        "At 'versions.v1.products.b.status': expected V, C or U, got 'maybe'",
        "At 'versions.v1.products.b.benchmark': expected a number, got '100'",
    )
    with pytest.raises(ConfigError, match="no version 'v9'"):
        parse_table(doc, "bench.toml", "v9")


def test_every_shipped_benchmark_has_a_source_and_status() -> None:
    table = benchmarks()
    assert len(table) == 14
    assert all(b.source and b.status in ("V", "C", "U") for b in table.values())
    assert table["cement_clinker"].levels == (100.0, 107.0, 117.0)


def test_products_file_must_name_known_benchmarks(tmp_path: Path) -> None:
    plant = load_plant(plant_dir(tmp_path, extra={"products.toml":
                                                  '[products.clinker]\nbenchmark = "klinker"\n'}))
    with pytest.raises(ConfigError, match="'klinker' is not in the benchmark table"):
        load_products(plant)


def test_month_correlation_of_line_energy_with_shift_output_golden(
        tmp_path: Path, store: Store, feeder: Feeder) -> None:
    plant = load_plant(plant_dir(tmp_path, extra={"output.csv": OUTPUT}))
    feed_day(feeder)
    fit, rows = month_correlation(store, plant, date(2025, 6, 1), "line1")
    # x (t) = 10, 25, 17.5, mean 17.5; y (kgce) = 19.664, 39.328, 29.496, mean 29.496.
    # dx = -7.5, 7.5, 0; dy = -9.832, 9.832, 0. Sxy = 2 × 73.74 = 147.48; Sxx = 112.5.
    # variable = 147.48 / 112.5 = 1.3109333 kgce/t; fixed = 29.496 - 1.3109333 × 17.5 =
    # 6.5546667 kgce per shift; the points are collinear, r = 1.
    assert [r.period for r in rows] == ["2025-06-01/1", "2025-06-01/2", "2025-06-01/3"]
    assert (fit.n, fit.variable, fit.fixed, fit.r) == (
        3, pytest.approx(1.3109333, abs=1e-7), pytest.approx(6.5546667, abs=1e-7),
        pytest.approx(1.0))
    # The incomer (site-wide) against line1's output: 10 kWh per 15 min every shift, 32 × 10 ×
    # 0.1229 = 39.328 kgce whatever the output: variable 0, fixed 39.328, r = 0.
    fit, _ = month_correlation(store, plant, date(2025, 6, 1), "site1", output_node="line1")
    assert (fit.variable, fit.fixed, fit.r) == (
        pytest.approx(0.0, abs=1e-9), pytest.approx(39.328), pytest.approx(0.0, abs=1e-6))
    with pytest.raises(NengtanError, match="no per-shift output"):
        month_correlation(store, plant, date(2025, 7, 1), "line1")


NIGHT_SHIFTS = """
[[shift]]
name = "A"
start = "06:00"
hours = 8
[[shift]]
name = "B"
start = "14:00"
hours = 8
[[shift]]
name = "N"
start = "22:00"
hours = 8
"""


def test_production_month_follows_the_shift_calendar(tmp_path: Path, store: Store,
                                                     feeder: Feeder) -> None:
    output = ("date,node,shift,product,quantity,unit\n2025-06-30,line1,N,clinker,4,t\n"
              "2025-06-01,line1,A,clinker,6,t\n")
    plant = load_plant(plant_dir(tmp_path, extra={"output.csv": output,
                                                  "shifts.toml": NIGHT_SHIFTS}))
    # The feeder runs 5 kWh per 15 min from 1 June 06:00 to 1 July 06:00 (the production month):
    # 30 days × 96 buckets × 5 kWh = 14 400 kWh.
    start = JUNE + 6 * HOUR
    feeder.steady("m2", start, start + 30 * 24 * HOUR, STEP, 0.0, 5.0)
    (month,) = month_intensities(store, plant, date(2025, 6, 1), "month")
    assert (month.start_ms, month.end_ms) == (start, start + 30 * 24 * HOUR)
    # 14 400 kWh × 0.1229 = 1 769.76 kgce over 6 + 4 = 10 t: 176.976 kgce/t, all data present.
    assert (month.output, month.kgce, month.completeness) == (10.0, pytest.approx(1769.76), 100.0)
    assert month.kgce_per_unit == pytest.approx(176.976)
    # The night shift of 30 June ends at 06:00 on 1 July: 32 buckets × 5 = 160 kWh.
    night = [u for u in month_intensities(store, plant, date(2025, 6, 1), "shift")
             if u.period == "2025-06-30/N"]
    assert night[0].kgce == pytest.approx(160 * KGCE)
