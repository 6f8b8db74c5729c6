"""Golden tests of the scheme scores: every expected value is worked by hand in the test."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from cloud_receiver.accounting.schemes import evaluate, fmt, load_rules, parse_rules
from nengtan.errors import ConfigError

RULES = load_rules()


def pts(scheme: str, item: str, **inputs: float | str) -> Decimal:
    return evaluate(RULES, scheme, item, **inputs).points


# -- 零碳: self-reduction, round(min(ratio / 0.9, 1) × 15) half-up ----------------------------

def test_self_reduction_golden() -> None:
    # 8 100 of 10 000 t: ratio 0.81; 0.81 / 0.9 = 0.9; 0.9 × 15 = 13.5 → half-up → 14
    score = evaluate(RULES, "zero_carbon", "self_reduction", reduction=8100, total=10000)
    assert score.points == 14
    assert "0.81" in score.working and "13.5" in score.working
    assert score.inputs == {"reduction": Decimal(8100), "total": Decimal(10000)}
    assert score.max_points == 15 and score.status == "U" and "196号" in score.source
    # 7 000 of 10 000: 0.7 / 0.9 × 15 = 11.666… → 12
    assert pts("zero_carbon", "self_reduction", reduction=7000, total=10000) == 12
    # 5 100 of 10 000: 0.51 / 0.9 × 15 = 8.5 → half-up 9 (banker's rounding would give 8)
    assert pts("zero_carbon", "self_reduction", reduction=5100, total=10000) == 9
    # 9 000 of 10 000 is exactly 90 %: full 15; 9 500 is capped at 15
    assert pts("zero_carbon", "self_reduction", reduction=9000, total=10000) == 15
    assert pts("zero_carbon", "self_reduction", reduction=9500, total=10000) == 15
    # emissions rose (negative reduction): 0, not a negative score
    assert pts("zero_carbon", "self_reduction", reduction=-100, total=10000) == 0


# -- 零碳: 3-year intensity decline, 6 % → 2, +1 per whole point, max 6 -------------------------

@pytest.mark.parametrize(("earlier", "later", "expected"), [
    ("1.00", "0.95", 0),   # (1.00 − 0.95) / 1.00 × 100 = 5 % < 6 → 0
    ("1.00", "0.94", 2),   # 6 % exactly → 2
    ("1.00", "0.93", 3),   # 7 % → 2 + floor(7 − 6) = 3 (a float would give 6.999… → 2)
    ("2.50", "2.30", 4),   # (2.50 − 2.30) / 2.50 × 100 = 8 % → 2 + 2 = 4
    ("1.00", "0.925", 3),  # 7.5 % → 2 + floor(1.5) = 3
    ("1.00", "0.89", 6),   # 11 % → 2 + 5 = 7, capped at 6
    ("1.00", "1.10", 0),   # intensity rose: −10 % → 0
])
def test_intensity_decline_golden(earlier: str, later: str, expected: int) -> None:
    assert pts("zero_carbon", "intensity_decline", earlier=earlier, later=later) == expected


# -- 零碳: offset ratio, ≥100 % → 10, 50–100 % → r × 10, < 50 % → 0 ----------------------------

@pytest.mark.parametrize(("offsets", "residual", "expected"), [
    (1200, 1200, "10"),    # 1200 / 1200 = 1 → 10
    (1500, 1200, "10"),    # 1.25 ≥ 1 → 10
    (900, 1200, "7.5"),    # 900 / 1200 = 0.75 → 0.75 × 10 = 7.5
    (600, 1200, "5"),      # 0.5 exactly → 5
    (599, 1200, "0"),      # 0.4991… < 0.5 → 0
    (1000, 1200, "8.33"),  # 0.8333… × 10 = 8.333… → 8.33 (2 decimals)
])
def test_offset_ratio_golden(offsets: int, residual: int, expected: str) -> None:
    assert pts("zero_carbon", "offset_ratio", offsets=offsets, residual=residual) == Decimal(expected)


# -- 超级能效: unit-product energy vs benchmark, 15 + 1 per whole 1 % below, max 25 --------------

@pytest.mark.parametrize(("actual", "benchmark", "expected"), [
    (100, 100, 15),    # at the benchmark: 15
    (97, 100, 18),     # (100 − 97) / 100 × 100 = 3 % → 15 + 3
    (97.5, 100, 17),   # 2.5 % → 15 + floor(2.5) = 17
    (88.2, 98, 25),    # (98 − 88.2) / 98 × 100 = 10 % exactly → 25 (a float gives 9.999… → 24)
    (80, 100, 25),     # 20 % → 35, capped at 25
    (100.1, 100, 0),   # worse than the benchmark → 0
])
def test_unit_product_energy_golden(actual: float, benchmark: float, expected: int) -> None:
    got = pts("super_efficiency", "unit_product_energy", actual=actual, benchmark=benchmark)
    assert got == expected


# -- 超级能效: process improvement steps and renewable share steps -------------------------------

@pytest.mark.parametrize(("previous", "current", "expected"), [
    (120, 108, 15),   # (120 − 108) / 120 × 100 = 10 % → 15
    (120, 110, 10),   # 8.33 % ≥ 5 → 10
    (100, 97, 5),     # 3 % exactly → 5
    (100, 97.1, 0),   # 2.9 % → 0
])
def test_process_improvement_golden(previous: float, current: float, expected: int) -> None:
    got = pts("super_efficiency", "process_improvement", previous=previous, current=current)
    assert got == expected


@pytest.mark.parametrize(("part", "whole", "expected"), [
    (1100, 10000, 3),  # 11 % > 10 → 3
    (1000, 10000, 2),  # 10 % is not "大于10%": 2
    (500, 10000, 2),   # 5 %: the higher step (5–10 %) wins → 2
    (200, 10000, 1),   # 2 % → 1
    (199, 10000, 0),   # 1.99 % → 0
])
def test_renewable_share_golden(part: int, whole: int, expected: int) -> None:
    assert pts("super_efficiency", "renewable_share", part=part, whole=whole) == expected


def test_equipment_share_golden() -> None:
    # 7 of 9 motors at grade 1: 7 / 9 = 0.777… × 3 = 2.333… → 2.33
    assert pts("super_efficiency", "motor_share", part=7, whole=9) == Decimal("2.33")
    # 2 of 3 transformers: 0.666… × 3 = 2.0 → 2
    assert pts("super_efficiency", "transformer_share", part=2, whole=3) == 2
    assert pts("super_efficiency", "transformer_share", part=3, whole=3) == 3


# -- rules as data -------------------------------------------------------------------------------

def test_a_plant_override_changes_the_formula(tmp_path: Path) -> None:
    text = (Path(__file__).parents[3] / "cloud_receiver/accounting/scheme_rules.toml").read_text(
        encoding="utf-8")
    (tmp_path / "scheme_rules.toml").write_text(
        text.replace('full_at = "0.9"', 'full_at = "0.8"').replace(
            'version = "hn-2024-196-seed-1"', 'version = "plant-override"'), encoding="utf-8")
    rules = load_rules(tmp_path)
    assert rules.version == "plant-override"
    # 0.72 / 0.8 = 0.9 × 15 = 13.5 → 14 (with 0.9: 0.72 / 0.9 × 15 = 12)
    assert evaluate(rules, "zero_carbon", "self_reduction", reduction=72, total=100).points == 14
    assert evaluate(RULES, "zero_carbon", "self_reduction", reduction=72, total=100).points == 12


def test_bad_rules_list_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules({"zero_carbon": {
            "a": {"kind": "magic", "label": "x", "source": "s", "status": "U"},
            "b": {"kind": "capped_ratio", "label": "x", "source": "s", "status": "U",
                  "full_at": "zero", "max_points": "15"},
            "c": {"kind": "steps", "label": "x", "source": "s", "status": "U", "max_points": "3",
                  "steps": [{"points": "1"}]},
        }, "extra": 1}, "rules.toml")
    text = str(info.value)
    for expected in ("At 'version'", "zero_carbon.a.kind': unknown kind 'magic'",
                     "zero_carbon.b.full_at'", "zero_carbon.c.steps[0]'", "At 'extra': unknown"):
        assert expected in text


def test_wrong_or_impossible_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="takes inputs reduction, total"):
        evaluate(RULES, "zero_carbon", "self_reduction", reduction=1)
    with pytest.raises(ValueError, match="total must be positive"):
        evaluate(RULES, "zero_carbon", "self_reduction", reduction=1, total=0)
    with pytest.raises(ConfigError, match="no such rule"):
        evaluate(RULES, "zero_carbon", "nope", reduction=1, total=1)


def test_fmt_is_plain_and_exact() -> None:
    assert fmt(Decimal("13.50")) == "13.5"
    assert fmt(Decimal("1E+1")) == "10"
    assert fmt(Decimal(2) / Decimal(3)) == "0.666667"


# -- pre-filled evaluation tables, wired from the ledger -------------------------------------------

def test_zero_carbon_table_from_the_ledger(tmp_path: Path) -> None:
    from datetime import date

    from cloud_receiver.accounting.evaluation import (
        super_efficiency_table,
        zero_carbon_scores,
        zero_carbon_table,
    )
    from cloud_receiver.accounting.ledger import add_entry, load_ledger

    (tmp_path / "ledger.toml").write_text("[baseline]\nyear = 2021\nemissions_t = 10000.0\n",
                                          encoding="utf-8")
    add_entry(tmp_path, "green_electricity", {"id": "GE-1", "for_year": 2024, "mwh": 1000.0})
    add_entry(tmp_path, "offset", {
        "id": "CCER-1", "kind": "ccer", "for_year": 2024, "tco2": 200.0, "registry": "CCER",
        "serial_first": "A-0001", "serial_last": "A-0200", "vintage": 2023,
        "retired_on": date(2025, 1, 10)})
    scores, d = zero_carbon_scores(RULES, load_ledger(tmp_path), 2024, emissions_t=1500,
                                   electricity_kwh=2_000_000, grid_factor="0.5",
                                   intensity_three_years_ago="0.80", intensity_now="0.72")
    # self-reduction: (10000 − 1500) / 10000 = 0.85; 0.85 / 0.9 × 15 = 14.166… → 14
    assert scores[("zero_carbon", "self_reduction")].points == 14
    # offsets: green min(1000, 2000) MWh × 0.5 = 500 t + CCER 200 t = 700 t; 700 / 1500 =
    # 0.4666… < 0.5 → 0
    assert d.total_t == 700 and scores[("zero_carbon", "offset_ratio")].points == 0
    # intensity: (0.80 − 0.72) / 0.80 × 100 = 10 % → 2 + 4 = 6
    assert scores[("zero_carbon", "intensity_decline")].points == 6
    table = zero_carbon_table(scores, 2024)
    by_item = {row[2]: row for row in table.rows}
    assert by_item["自主减排量"][6] == "14" and "0.85" in by_item["自主减排量"][4]
    assert by_item["抵消比例"][6] == "0"
    assert by_item["抵消方式"][6] == "" and "需评价人员" in by_item["抵消方式"][4]
    csv_text = table.as_csv()
    assert csv_text.splitlines()[0] == ",".join(
        ["序号", "一级指标", "二级指标", "具体评价要求", "符合性说明及证明材料索引", "分值", "得分"])
    assert "<caption>“零碳”工厂评分表（2024 年）" in table.as_html()
    # the maxima of the listed rows add up to the scheme's 100 points
    assert sum(int(r[5]) for r in table.rows) == 100
    se = super_efficiency_table({("super_efficiency", "motor_share"): evaluate(
        RULES, "super_efficiency", "motor_share", part=2, whole=3)}, 2024)
    assert sum(int(r[5]) for r in se.rows) == 100
    assert {r[2]: r[6] for r in se.rows}["一级能效电机占比"] == "2"  # 2/3 × 3 = 2
    assert {r[2]: r[4] for r in se.rows}["单位产品综合能耗"] == "缺少计算所需数据"
