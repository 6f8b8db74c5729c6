"""Shift calendar, output import and the unit-product intensity / fit arithmetic (golden)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cloud_receiver.accounting.intensity import EnergyTotal, correlate, fit_line, unit_intensities
from cloud_receiver.accounting.output import OutputRecord, add_output, load_output, parse_output_csv
from cloud_receiver.accounting.shifts import DEFAULT_SHIFTS, ShiftCalendar, load_shifts
from nengtan.errors import ConfigError, NengtanError

# 2025-06-01T00:00:00+08:00 in Unix ms: 2025-05-31T16:00:00Z.
MIDNIGHT = 1_748_707_200_000
HOUR = 3_600_000

NIGHT_SHIFTS = """
timezone = "Asia/Shanghai"
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


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_default_calendar_is_three_eight_hour_shifts_from_local_midnight(tmp_path: Path) -> None:
    cal = load_shifts(tmp_path)
    assert cal.shifts == DEFAULT_SHIFTS
    slots = cal.slots_of_day(date(2025, 6, 1))
    assert [(s.shift, s.start_ms, s.end_ms) for s in slots] == [
        ("1", MIDNIGHT, MIDNIGHT + 8 * HOUR), ("2", MIDNIGHT + 8 * HOUR, MIDNIGHT + 16 * HOUR),
        ("3", MIDNIGHT + 16 * HOUR, MIDNIGHT + 24 * HOUR)]


def test_night_shift_belongs_to_the_day_it_starts(tmp_path: Path) -> None:
    cal = load_shifts(write(tmp_path, "shifts.toml", NIGHT_SHIFTS))
    night = cal.slots_of_day(date(2025, 6, 1))[2]
    # 2025-06-01 22:00 +08:00 → 2025-06-02 06:00 +08:00
    assert (night.label, night.start_ms, night.end_ms) == (
        "2025-06-01/N", MIDNIGHT + 22 * HOUR, MIDNIGHT + 30 * HOUR)
    # 03:00 on 2 June is still the night shift of 1 June; 06:00 sharp is shift A of 2 June.
    assert cal.slot_at(MIDNIGHT + 27 * HOUR).label == "2025-06-01/N"
    assert cal.slot_at(MIDNIGHT + 30 * HOUR).label == "2025-06-02/A"
    assert cal.slot_at(MIDNIGHT + 30 * HOUR - 1).label == "2025-06-01/N"


def test_shift_file_problems_are_all_reported(tmp_path: Path) -> None:
    text = """
timezone = "Mars/Olympus"
[[shift]]
name = "A"
start = "06:10"
hours = 8
[[shift]]
name = "A"
start = "25:00"
hours = 0
"""
    with pytest.raises(ConfigError) as info:
        load_shifts(write(tmp_path, "shifts.toml", text))
    problems = "\n".join(info.value.problems)
    assert "unknown time zone 'Mars/Olympus'" in problems
    assert "shift[0].start': 06:10 is not on a quarter hour" in problems
    assert "shift[1].start': expected local time 'HH:MM', got '25:00'" in problems
    assert "shift[1].hours'" in problems
    assert str(tmp_path / "shifts.toml") in str(info.value)


def test_shifts_must_tile_the_day(tmp_path: Path) -> None:
    text = NIGHT_SHIFTS.replace('start = "14:00"', 'start = "15:00"')
    with pytest.raises(ConfigError, match="shift 'A' ends at 14:00 but the next one, 'B', starts"
                                          " at 15:00"):
        load_shifts(write(tmp_path, "shifts.toml", text))
    short = NIGHT_SHIFTS.replace("hours = 8\n[[shift]]\nname = \"N\"", "hours = 7\n[[shift]]\nname = \"N\"")
    with pytest.raises(ConfigError, match="last 23 h together"):
        load_shifts(write(tmp_path, "shifts.toml", short))


CSV = """date,node,shift,product,quantity,unit
2025-06-01,line-1,1,clinker,100,t
2025-06-01,line-1,2,clinker,150.5,t
2025-06-01,line-2,,cement,80,t
"""


def test_output_csv_is_read_with_shift_and_whole_day_rows() -> None:
    cal = ShiftCalendar("Asia/Shanghai", DEFAULT_SHIFTS)
    records = parse_output_csv(CSV, "output.csv", cal)
    assert records == [
        OutputRecord(date(2025, 6, 1), "line-1", "1", "clinker", 100.0, "t"),
        OutputRecord(date(2025, 6, 1), "line-1", "2", "clinker", 150.5, "t"),
        OutputRecord(date(2025, 6, 1), "line-2", None, "cement", 80.0, "t"),
    ]


def test_output_csv_problems_name_line_and_column() -> None:
    cal = ShiftCalendar("Asia/Shanghai", DEFAULT_SHIFTS)
    text = CSV + ("2025-06-31,line-1,1,clinker,1,t\n"     # line 5: no such date
                  "2025-06-02,line-9,4,clinker,-3,t\n"    # line 6: node, shift, quantity
                  "2025-06-01,line-1,,clinker,5,t\n"      # line 7: whole day after shifts
                  "2025-06-01,line-1,1,clinker,5,t\n"     # line 8: repeated shift
                  "2025-06-03,line-2,,cement,5,kg\n")     # unit differs from line 4
    with pytest.raises(ConfigError) as info:
        parse_output_csv(text, "plant/output.csv", cal, nodes={"line-1", "line-2"})
    assert info.value.problems == (
        "line 5, column 'date': expected YYYY-MM-DD, got '2025-06-31'",
        "line 6, column 'node': 'line-9' is not a node of the plant model",
        "line 6, column 'shift': '4' is not in the shift calendar (1, 2, 3); leave it empty for"
        " a whole day",
        "line 6, column 'quantity': expected a number >= 0, got '-3'",
        "line 7: output of 'clinker' by 'line-1' on 2025-06-01 is already given on line 2 (per"
        " shift and per day cannot be mixed, nor repeated)",
        "line 8: output of 'clinker' by 'line-1' on 2025-06-01 is already given on line 2 (per"
        " shift and per day cannot be mixed, nor repeated)",
        "product 'cement' is given in several units (kg, t); use one so quantities can be added",
    )
    assert str(info.value).startswith("plant/output.csv: 7 problem(s)")


def test_missing_columns_are_named() -> None:
    cal = ShiftCalendar("Asia/Shanghai", DEFAULT_SHIFTS)
    with pytest.raises(ConfigError, match="missing column\\(s\\) shift, unit"):
        parse_output_csv("date,node,product,quantity\n", "o.csv", cal)


def test_add_output_validates_merges_and_rewrites_atomically(tmp_path: Path) -> None:
    write(tmp_path, "output.csv", "\ufeff" + CSV)  # as Excel saves it
    new = OutputRecord(date(2025, 6, 1), "line-1", "3", "clinker", 90.0, "t")
    records = add_output(tmp_path, [new])
    assert len(records) == 4
    assert load_output(tmp_path, load_shifts(tmp_path)) == records
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind
    # The same key again is refused and the file is left as it was ...
    before = (tmp_path / "output.csv").read_bytes()
    with pytest.raises(ConfigError, match=r"record 1 \(2025-06-01, line-1, shift 3, clinker\):"
                                          r" already recorded \(use replace"):
        add_output(tmp_path, [new])
    assert (tmp_path / "output.csv").read_bytes() == before
    # ... unless the caller asks to replace it.
    records = add_output(tmp_path, [OutputRecord(date(2025, 6, 1), "line-1", "3", "clinker",
                                                 95.0, "t")], replace=True)
    assert [r.quantity for r in records if r.shift == "3"] == [95.0]
    # A whole-day figure where shifts are recorded would count the day twice.
    with pytest.raises(ConfigError) as info:
        add_output(tmp_path, [OutputRecord(date(2025, 6, 1), "line-1", None, "clinker", 1.0,
                                           "t")], replace=True)
    assert info.value.problems == (
        "record 1 (2025-06-01, line-1, shift (whole day), clinker): that date, node and product"
        " already have output recorded per shift; per shift and per day cannot be mixed",)


def flat_energy(table: dict[tuple[str, int], tuple[float, float]]) -> object:
    """Energy per (node, window start) from a table; anything else is a test bug."""
    def energy(node: str, start_ms: int, end_ms: int) -> EnergyTotal:
        kgce, kgco2 = table[(node, start_ms)]
        return EnergyTotal(kgce, kgco2, 100.0)
    return energy


def test_unit_intensity_per_shift_day_and_month_golden() -> None:
    cal = ShiftCalendar("Asia/Shanghai", DEFAULT_SHIFTS)
    records = parse_output_csv(CSV, "output.csv", cal)
    energy = flat_energy({
        ("line-1", MIDNIGHT): (1229.0, 5366.0),              # shift 1
        ("line-1", MIDNIGHT + 8 * HOUR): (2458.0, 10732.0),  # shift 2
    })
    rows = unit_intensities(records, cal, energy, "shift")  # type: ignore[arg-type]
    assert [(u.period, u.kgce_per_unit, u.kgco2_per_unit) for u in rows] == [
        ("2025-06-01/1", 1229.0 / 100, 5366.0 / 100),        # 12.29 kgce/t, 53.66 kgCO2/t
        ("2025-06-01/2", 2458.0 / 150.5, 10732.0 / 150.5),   # 16.3322… kgce/t
    ]
    assert rows[0].kgce_per_unit == pytest.approx(12.29)
    # Day: shifts are summed; output 100 + 150.5 = 250.5 t against the whole day's energy.
    day = unit_intensities(records, cal, flat_energy({
        ("line-1", MIDNIGHT): (5010.0, 20040.0), ("line-2", MIDNIGHT): (800.0, 4000.0)}),  # type: ignore[arg-type]
        "day")
    assert [(u.node, u.output, u.kgce_per_unit, u.kgco2_per_unit) for u in day] == [
        ("line-1", 250.5, 5010.0 / 250.5, 20040.0 / 250.5),  # 20 kgce/t, 80 kgCO2/t
        ("line-2", 80.0, 10.0, 50.0)]                         # 800/80, 4000/80
    # Month: the window runs from 1 June 00:00 to 1 July 00:00 local.
    month = unit_intensities(records, cal, lambda n, s, e: EnergyTotal(
        float(e - s) / HOUR, 0.0, 99.5), "month")
    assert [(u.period, u.kgce, u.end_ms - u.start_ms) for u in month] == [
        ("2025-06", 720.0, 30 * 24 * HOUR), ("2025-06", 720.0, 30 * 24 * HOUR)]


def test_several_products_on_one_line_get_no_single_intensity() -> None:
    cal = ShiftCalendar("Asia/Shanghai", DEFAULT_SHIFTS)
    text = CSV + "2025-06-01,line-2,,slag,5,t\n"
    records = parse_output_csv(text, "o.csv", cal)
    rows = unit_intensities(records, cal, lambda n, s, e: EnergyTotal(10.0, 1.0, 100.0), "day")
    mixed = next(u for u in rows if u.node == "line-2")
    assert (mixed.product, mixed.kgce_per_unit) == (None, None)
    assert "several products (cement, slag)" in mixed.note


def test_zero_output_gives_no_intensity() -> None:
    cal = ShiftCalendar("Asia/Shanghai", DEFAULT_SHIFTS)
    records = [OutputRecord(date(2025, 6, 1), "line-1", "1", "clinker", 0.0, "t")]
    (row,) = unit_intensities(records, cal, lambda n, s, e: EnergyTotal(5.0, 1.0, 100.0), "shift")
    assert row.kgce_per_unit is None and "no output" in row.note


def test_fit_line_golden() -> None:
    # Points on energy = 200 + 3 × output exactly: fixed 200 kgce/shift, 3 kgce per t, r = 1.
    fit = fit_line([(10.0, 230.0), (20.0, 260.0), (40.0, 320.0)])
    assert (fit.n, fit.fixed, fit.variable) == (3, pytest.approx(200.0), pytest.approx(3.0))
    assert fit.r == pytest.approx(1.0)
    # x = 1, 2, 3; y = 2, 1, 3. mean x 2, mean y 2; Sxy = (-1)(0)+(0)(-1)+(1)(1) = 1;
    # Sxx = 2; Syy = 0+1+1 = 2. slope 1/2, intercept 2 - 0.5×2 = 1, r = 1/sqrt(2×2) = 0.5.
    fit = fit_line([(1.0, 2.0), (2.0, 1.0), (3.0, 3.0)])
    assert (fit.variable, fit.fixed, fit.r, fit.r2) == (0.5, 1.0, 0.5, 0.25)
    with pytest.raises(NengtanError, match="at least 2"):
        fit_line([(1.0, 1.0)])
    with pytest.raises(NengtanError, match="same output"):
        fit_line([(5.0, 1.0), (5.0, 2.0)])


def test_correlate_equipment_energy_with_its_line_output() -> None:
    cal = ShiftCalendar("Asia/Shanghai", DEFAULT_SHIFTS)
    records = parse_output_csv(
        "date,node,shift,product,quantity,unit\n"
        "2025-06-01,line-1,1,clinker,10,t\n2025-06-01,line-1,2,clinker,20,t\n"
        "2025-06-01,line-1,3,clinker,40,t\n", "o.csv", cal)
    # The kiln uses 50 kgce per shift plus 2 kgce per t of the line's output.
    starts = {MIDNIGHT: 10.0, MIDNIGHT + 8 * HOUR: 20.0, MIDNIGHT + 16 * HOUR: 40.0}

    def energy(node: str, start: int, end: int) -> EnergyTotal:
        assert node in ("kiln", "line-1")
        return EnergyTotal(50.0 + 2.0 * starts[start] if node == "kiln" else 999.0, 0.0, 100.0)

    fit, rows = correlate(records, cal, energy, "kiln", output_node="line-1")
    assert (fit.fixed, fit.variable) == (pytest.approx(50.0), pytest.approx(2.0))
    assert [(r.node, r.kgce, r.kgce_per_unit) for r in rows] == [
        ("kiln", 70.0, 7.0), ("kiln", 90.0, 4.5), ("kiln", 130.0, 3.25)]
