"""Scheme scores fed from stored readings and the plant files: golden values worked by hand
(the plant of scores_helpers), where every input came from, and missing inputs reported as
missing rather than invented."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from accounting_helpers import local_ms
from scores_helpers import END_2025, INPUTS, feed_years, scheme_plant

from cloud_receiver.accounting.evaluation import zero_carbon_scores
from cloud_receiver.accounting.factors import Choice
from cloud_receiver.accounting.ledger import load_ledger
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.accounting.scheme_inputs import load_scheme_inputs
from cloud_receiver.accounting.schemes import load_rules
from cloud_receiver.accounting.scores import ItemScore, ScoreSheet, build_scores
from cloud_receiver.store import Store
from nengtan.errors import ConfigError

HENAN_2023 = Choice("statistical", "henan", 2023)


def sheet_of(store: Store, plant: Path, year: int = 2025, now_ms: int = END_2025 + 1) -> ScoreSheet:
    return build_scores(store, load_plant(plant), HENAN_2023, year, now_ms=now_ms)


def items(sheet: ScoreSheet) -> dict[str, ItemScore]:
    return {i.item: i for i in sheet.items}


def value(item: ItemScore, name: str) -> Decimal | None:
    return next(i.value for i in item.inputs if i.name == name)


@pytest.fixture
def full(store: Store, tmp_path: Path) -> ScoreSheet:
    feed_years(store)
    return sheet_of(store, scheme_plant(tmp_path))


def test_every_item_golden(full: ScoreSheet) -> None:
    got = items(full)
    # Emissions 2025: incomer 20 000 kWh × 0.5897 = 11 794 kgCO2 = 11.794 t.
    # Self-reduction: (23.588 − 11.794) ÷ 23.588 = 0.5; 0.5 ÷ 0.9 × 15 = 8.33 → 8.
    sr = got["self_reduction"]
    assert (value(sr, "reduction"), value(sr, "total")) == (Decimal("11.794"), Decimal("23.588"))
    assert sr.score is not None and sr.score.points == 8
    # Intensity of line1 (tCO2/t): 2022: 17 500 × 0.5897 ÷ 1000 ÷ 20 = 0.5159875;
    # 2025: 16 000 × 0.5897 ÷ 1000 ÷ 20 = 0.47176. Decline = 1 − 16 000/17 500 = 8.571 %
    # → 2 + floor(8.571 − 6) = 4.
    intensity = got["intensity_decline"]
    assert value(intensity, "earlier") == Decimal("0.5159875")
    assert value(intensity, "later") == Decimal("0.47176")
    assert intensity.score is not None and intensity.score.points == 4
    # Offsets: green min(0.5 + 1 MWh, 20 MWh used) × 0.5897 = 0.88455 t, + CCER 6 t = 6.88455 t;
    # ratio 6.88455 ÷ 11.794 = 0.58373… ≥ 0.5 → × 10 = 5.8373… → 5.84.
    offset = got["offset_ratio"]
    assert value(offset, "offsets") == Decimal("6.88455")
    assert offset.score is not None and offset.score.points == Decimal("5.84")
    assert full.deductions is not None and full.deductions.entries == (
        "GE-2025-1", "GEC-2025-A", "CCER-1")
    # Unit-product energy of line1: 16 000 × 0.1229 = 1 966.4 kgce ÷ 20 t = 98.32 kgce/t against
    # the clinker benchmark 100: (100 − 98.32) ÷ 100 = 1.68 % below → 15 + floor(1.68) = 16.
    unit = got["unit_product_energy"]
    assert (value(unit, "actual"), value(unit, "benchmark")) == (Decimal("98.32"), 100)
    assert unit.score is not None and unit.score.points == 16
    # Entered: (120 − 108) ÷ 120 = 10 % → 15.
    process = got["process_improvement"]
    assert process.score is not None and process.score.points == 15
    # Renewable share: 1.5 MWh × 0.1229 tce/MWh = 0.18435 tce of 20 000 × 0.1229 kgce = 2.458 tce
    # = 7.5 % → 2.
    renewable = got["renewable_share"]
    assert (value(renewable, "part"), value(renewable, "whole")) == (Decimal("0.18435"),
                                                                     Decimal("2.458"))
    assert renewable.score is not None and renewable.score.points == 2
    # Motors: M1, M3 grade 1 of M1–M3 in service (M4 retired) = 2/3 × 3 = 2. Fans: 0/1 → 0.
    assert got["motor_share"].score is not None and got["motor_share"].score.points == 2
    assert value(got["motor_share"], "whole") == 3
    assert got["fan_pump_share"].score is not None and got["fan_pump_share"].score.points == 0


def test_derived_scores_equal_the_librarys_zero_carbon_scores(full: ScoreSheet,
                                                              tmp_path: Path) -> None:
    rules = load_rules()
    expected, d = zero_carbon_scores(
        rules, load_ledger(tmp_path / "plant"), 2025, emissions_t="11.794",
        electricity_kwh=20000, grid_factor="0.5897", intensity_three_years_ago="0.5159875",
        intensity_now="0.47176")
    assert full.scores().items() >= expected.items()
    assert full.deductions == d


def test_every_input_says_where_it_came_from(full: ScoreSheet) -> None:
    got = items(full)
    for item in full.items:
        for i in item.inputs:
            assert i.origin in ("derived", "entered", "missing") and i.provenance
            assert (i.value is None) == (i.origin == "missing")
    sources = {(i.item, x.name): x.provenance for i in full.items for x in i.inputs}
    assert "ledger.toml baseline year 2021" in sources[("self_reduction", "total")]
    assert sources[("offset_ratio", "residual")] == (
        "annual report 2025, enterprise: 11794 (electricity) = 11794 kgCO2 ÷ 1000 = 11.794 tCO2"
        " (energy emissions only: process emissions are not metered)")
    assert "annual report 2022, node line1" in sources[("intensity_decline", "earlier")]
    assert "output.csv 2022: clinker at line1" in sources[("intensity_decline", "earlier")]
    assert "benchmarks.toml@2023-v1 cement_clinker" in sources[("unit_product_energy",
                                                                 "benchmark")]
    assert "GE-2025-1, GEC-2025-A, CCER-1" in sources[("offset_ratio", "offsets")]
    assert "equipment.csv" in sources[("motor_share", "part")]
    previous = next(x for x in got["process_improvement"].inputs if x.name == "previous")
    assert previous.origin == "entered"
    assert previous.provenance == ("entered in scheme_inputs.toml at "
                                   "'2025.super_efficiency.process_improvement.previous' "
                                   "(source: 2025 节能诊断报告 表 4-2)")


def test_a_missing_input_is_reported_not_invented(full: ScoreSheet) -> None:
    transformer = items(full)["transformer_share"]
    assert transformer.score is None and {i.origin for i in transformer.inputs} == {"missing"}
    assert transformer.note == (
        "not computable: missing part, whole (equipment.csv lists no in-service transformer)"
        " — enter them in scheme_inputs.toml at '2025.super_efficiency.transformer_share'")
    (table,) = full.tables("super_efficiency")
    row = next(r for r in table.rows if r[2] == "一级能效变压器占比")
    assert row[6] == "" and row[4].startswith("缺少计算所需数据：missing part, whole")


def test_a_bare_plant_scores_nothing_it_cannot_back(store: Store, tmp_path: Path) -> None:
    # No ledger, equipment, inputs, output or products: only the store's figures exist.
    feed_years(store)
    plant = scheme_plant(tmp_path, **{name: "" for name in (
        "ledger.toml", "output.csv", "equipment.csv", "scheme_inputs.toml", "products.toml")})
    sheet = sheet_of(store, plant)
    assert sheet.scores() == {} and sheet.deductions is None
    notes = {i.item: i.note for i in sheet.items}
    assert "no [baseline] in ledger.toml" in notes["self_reduction"]
    assert "no ledger.toml" in notes["offset_ratio"]
    assert "no output recorded in output.csv for 2025" in notes["unit_product_energy"]
    assert "process_improvement.previous" not in notes["process_improvement"]
    assert notes["process_improvement"].endswith(
        "enter them in scheme_inputs.toml at '2025.super_efficiency.process_improvement'")
    assert "no equipment.csv" in notes["motor_share"]
    # The derived energy is there even though the share cannot be scored without the ledger.
    whole = next(x for x in items(sheet)["renewable_share"].inputs if x.name == "whole")
    assert whole.value == Decimal("2.458")


def test_a_year_without_readings_or_earlier_output(store: Store, tmp_path: Path) -> None:
    feed_years(store)
    # 2024: the incomer's only reading is its first, at 2025-01-01 00:00 (the period's edge),
    # so the enterprise has no 2024 figure; not a 0 that would score as a full reduction.
    sheet = sheet_of(store, scheme_plant(tmp_path), year=2024, now_ms=END_2025 + 1)
    offset = items(sheet)["offset_ratio"]
    assert offset.score is None and "residual (no stored readings for incomer in 2024)" in (
        offset.note)
    assert items(sheet)["self_reduction"].score is None
    empty = sheet_of(store, scheme_plant(tmp_path), year=2023, now_ms=END_2025 + 1)
    assert empty.warnings == ("no stored readings for 2023: energy and emissions are missing",)
    # 2025 without the 2022 output: the earlier intensity is missing, the later one is not.
    output = "date,node,shift,product,quantity,unit\n2025-03-01,line1,,clinker,20,t\n"
    sheet = sheet_of(store, scheme_plant(tmp_path, **{"output.csv": output}))
    decline = items(sheet)["intensity_decline"]
    assert decline.score is None and value(decline, "later") == Decimal("0.47176")
    assert "earlier (no output of 'clinker' under node line1 in output.csv for 2022)" in (
        decline.note)


def test_an_entered_input_replaces_a_derived_one_and_says_so(store: Store,
                                                             tmp_path: Path) -> None:
    feed_years(store)
    text = INPUTS + ('\n[2025.zero_carbon.offset_ratio]\nresidual = "13.7691"\n'
                     'source = "2025 核查报告 (含过程排放)"\n')
    sheet = sheet_of(store, scheme_plant(tmp_path, **{"scheme_inputs.toml": text}))
    offset = items(sheet)["offset_ratio"]
    residual = next(x for x in offset.inputs if x.name == "residual")
    assert residual.origin == "entered" and residual.value == Decimal("13.7691")
    assert "replaces the derived 11.794 (annual report 2025" in residual.provenance
    # 6.88455 ÷ 13.7691 = 0.5 exactly → 0.5 × 10 = 5
    assert offset.score is not None and offset.score.points == 5


def test_several_products_need_a_choice(store: Store, tmp_path: Path) -> None:
    feed_years(store)
    output = ("date,node,shift,product,quantity,unit\n2025-03-01,line1,,clinker,20,t\n"
              "2025-03-01,line1,,cement,5,t\n")
    sheet = sheet_of(store, scheme_plant(tmp_path, **{"output.csv": output,
                                                      "scheme_inputs.toml": "\n"}))
    assert "several products in output.csv for 2025 (cement, clinker): name one in " \
           "scheme_inputs.toml [unit_product] product" in items(sheet)["unit_product_energy"].note


def test_an_unfinished_year_is_flagged(store: Store, tmp_path: Path) -> None:
    feed_years(store)
    sheet = sheet_of(store, scheme_plant(tmp_path), now_ms=local_ms("2025-12-31T12:00"))
    assert "2025 is not over: figures run to 2025-12-31, and the schemes score whole years" in (
        sheet.warnings)


def test_scheme_inputs_are_validated_with_every_problem_and_its_path(tmp_path: Path) -> None:
    (tmp_path / "scheme_inputs.toml").write_text("""
[unit_product]
node = "line9"
colour = "red"

[2025.super_efficiency.process_improvement]
previos = 120
current = "a lot"

[2025.zero_carbon.magic]
x = 1

[2025.nonsense]
x = 1

[last_year]
x = 1
""", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_scheme_inputs(tmp_path, load_rules(), nodes=["ent", "line1"])
    problems = info.value.problems
    assert "At 'unit_product.node': 'line9' is not a node of plant.toml" in problems
    assert "At 'unit_product.colour': unknown key (product, node)" in problems
    assert ("At '2025.super_efficiency.process_improvement.previos': unknown input "
            "(process_improvement takes previous, current, and source)") in problems
    assert ("At '2025.super_efficiency.process_improvement.current': expected a number, got "
            "'a lot'") in problems
    assert any(p.startswith("At '2025.zero_carbon.magic': no such score item") for p in problems)
    assert any(p.startswith("At '2025.nonsense'") for p in problems)
    assert any(p.startswith("At 'last_year': unknown key") for p in problems)
    assert len(problems) == 7
