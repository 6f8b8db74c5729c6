"""`agent scan` identification: fake meters answer register reads in memory, no port is opened.

A fake meter is strict: it answers exception 02 for any register its map lacks, as real meters do
for addresses they do not define, and stays silent (MeterTimeout) when told to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from agent.meters import Block, MeterModel, encode_value, models
from agent.meters._model import model_from_table
from agent.scan import Check, identify, judge, parse_units, probe_plan
from nengtan.errors import MeterProtocolError, MeterTimeout

#: What a healthy 230 V / 50 Hz meter reads; every other measurement reads 7.0.
HEALTHY = {"voltage_l1_n": 231.0, "voltage_l2_n": 229.5, "voltage_l3_n": 230.4, "voltage_l1_l2": 399.0,
           "voltage_l2_l3": 398.2, "voltage_l3_l1": 400.1, "frequency": 50.01, "power_factor_total": 0.95}


def registers_of(model: MeterModel, values: Mapping[str, float] | None = None) -> dict[tuple[int, int], int]:
    """The registers a meter of ``model`` holds when it measures ``values`` (exponents set to 0)."""
    values = {**HEALTHY, **(values or {})}
    registers: dict[tuple[int, int], int] = {}
    for point in model.points.values():
        raw = values.get(point.measurement, 7.0) / point.scale
        for k, word in enumerate(encode_value(raw, point.value_type, point.word_order)):
            registers[(point.function, point.address + k)] = word
        if point.exponent is not None:  # a field of -offset makes the power 0
            field = -point.exponent.offset & (0xFFFF if point.exponent.field == "word" else 0xFF)
            shift = 8 if point.exponent.field == "high" else 0
            key = (point.function, point.exponent.address)
            registers[key] = registers.get(key, 0) | field << shift
        if point.sign is not None:
            registers.setdefault((point.function, point.sign.address), 0)
    return registers


class FakeMeter:
    """``read(block)`` over a register map; remembers every request."""

    def __init__(self, registers: Mapping[tuple[int, int], int] | None = None, *,
                 exception: int | None = None) -> None:
        self.registers = registers
        self.exception = exception
        self.requests: list[Block] = []

    def __call__(self, block: Block) -> list[int]:
        self.requests.append(block)
        if self.registers is None:
            raise MeterTimeout("no answer", unit_id=1, address=block.start)
        try:
            if self.exception is not None:
                raise KeyError(block.start)
            addresses = range(block.start, block.start + block.count)
            return [self.registers[(block.function, a)] for a in addresses]
        except KeyError:
            code = self.exception or 2
            raise MeterProtocolError(f"exception {code}", unit_id=1, address=block.start, code=code) from None


def table(fc: int, points: Mapping[str, tuple[Any, ...]], **extra: Any) -> dict[str, Any]:
    """A model file's table: ``points`` maps a measurement to (address, type[, scale])."""
    return {"manufacturer": "Test", "description": "synthetic", "source": "this test", "max_registers": 80,
            "probe": {"measurement": "voltage_l1_n", "low": 90.0, "high": 300.0},
            "points": {m: {"fc": fc, "address": p[0], "type": p[1], "scale": p[2] if len(p) > 2 else 1}
                       for m, p in points.items()}, **extra}


THREE_PHASE = {"voltage_l1_n": (0, "float32"), "voltage_l2_n": (2, "float32"), "voltage_l3_n": (4, "float32"),
               "current_l1": (6, "float32"), "frequency": (0x46, "float32"),
               "active_energy_import": (0x48, "float32")}
SINGLE_PHASE = {"voltage_l1_n": (0, "float32"), "current_l1": (6, "float32"), "frequency": (0x46, "float32")}
REACTIVE = {"reactive_energy_import": (0x4C, "float32")}
HOLDING = {"voltage_l1_n": (0x2006, "float32", 0.1), "frequency": (0x2044, "float32", 0.01)}
CATALOG = {name: model_from_table(name, data, "test") for name, data in {
    "three": table(4, {**THREE_PHASE, **REACTIVE}),  # like an SDM630
    "three-lite": table(4, THREE_PHASE),  # like an SDM72: the same map without reactive energy
    "single": table(4, SINGLE_PHASE),  # like an SDM120: L1 only, same addresses
    "holding": table(3, HOLDING),  # like a DTSU666
    "holding-twin": table(3, HOLDING),  # a second name for the very same map
}.items()}


def scan(meter: FakeMeter, catalog: Mapping[str, MeterModel] = CATALOG, **nominal: float) -> Any:
    return identify(5, meter, catalog=catalog, nominal_voltage=nominal.get("voltage", 230.0),
                    nominal_frequency=nominal.get("frequency", 50.0))


def test_a_silent_unit_costs_one_request_the_narrowest_fc03_probe() -> None:
    meter = FakeMeter(None)
    assert scan(meter) is None
    assert [(b.function, b.start, b.count) for b in meter.requests] == [(3, 0x2006, 2)]


def test_a_unit_answering_only_exceptions_is_listed_as_answering_with_model_unknown() -> None:
    result = scan(FakeMeter({}, exception=4))
    assert (result.unit, result.status, result.model, result.candidates) == (5, "unknown", None, ())
    assert result.verdict == "answers, model unknown"
    assert result.notes and all("exception 4" in note for note in result.notes)


def test_a_three_phase_meter_is_named_over_models_that_fit_with_fewer_points() -> None:
    result = scan(FakeMeter(registers_of(CATALOG["three"])))
    assert (result.model, result.status) == ("three", "preferred")
    assert result.candidates == ("three", "three-lite", "single")
    assert result.value("voltage_l2_n") == pytest.approx(229.5)
    assert result.value("frequency") == pytest.approx(50.01)
    assert all(c.ok for c in result.checks)


def test_a_single_phase_meter_is_not_taken_for_the_three_phase_model_sharing_its_addresses() -> None:
    result = scan(FakeMeter(registers_of(CATALOG["single"])))
    assert (result.model, result.status, result.candidates) == ("single", "identified", ("single",))


def test_a_register_only_one_model_defines_tells_equal_candidates_apart() -> None:
    # "three-lite" refuses 0x4C (exception 02), which rules "three" out.
    result = scan(FakeMeter(registers_of(CATALOG["three-lite"])))
    assert result.model == "three-lite"
    assert "three" not in result.candidates


def test_a_zero_in_the_telling_register_is_no_evidence_so_the_tie_stays_honest() -> None:
    result = scan(FakeMeter(registers_of(CATALOG["three"], {"reactive_energy_import": 0.0})))
    assert (result.status, result.model) == ("ambiguous", None)
    assert set(result.candidates) >= {"three", "three-lite"}
    assert "three or three-lite" in result.verdict


def test_identical_maps_are_reported_ambiguous_with_both_candidates() -> None:
    result = scan(FakeMeter(registers_of(CATALOG["holding"])))
    assert (result.status, result.model) == ("ambiguous", None)
    assert result.candidates == ("holding", "holding-twin")


def test_models_that_share_probe_registers_share_the_requests() -> None:
    meter = FakeMeter(registers_of(CATALOG["three"]))
    scan(meter)
    reads = [(b.function, b.start, b.count) for b in meter.requests]
    assert len(reads) == len(set(reads)), reads  # nothing read twice
    # presence (FC03), the widest FC04 probe (covers "single"'s), frequency, the telling 0x4C read;
    # the FC03 map is refused, so the models probed there need nothing more.
    assert reads == [(3, 0x2006, 2), (4, 0, 6), (4, 0x46, 2), (4, 0x4C, 2)]


def test_a_voltage_outside_nominal_is_implausible_and_names_no_model() -> None:
    result = scan(FakeMeter(registers_of(CATALOG["single"])), voltage=110.0)
    assert (result.status, result.model, result.candidates[0]) == ("implausible", None, "single")
    assert "voltage_l1_n 231 V" in result.verdict
    bad = [c for c in result.checks if not c.ok]
    assert [(c.measurement, c.kind) for c in bad] == [("voltage_l1_n", "check")]
    assert (bad[0].low, bad[0].high) == pytest.approx((99.0, 121.0))


@pytest.mark.parametrize("nominal, status", [(50.0, "implausible"), (60.0, "identified")])
def test_the_frequency_check_follows_the_nominal_frequency(nominal: float, status: str) -> None:
    result = scan(FakeMeter(registers_of(CATALOG["single"], {"frequency": 59.98})), frequency=nominal)
    assert result.status == status


def test_a_probe_value_outside_the_models_range_makes_no_candidate() -> None:
    result = scan(FakeMeter(registers_of(CATALOG["single"], {"voltage_l1_n": 0.0})))
    assert (result.status, result.candidates) == ("unknown", ())


@pytest.mark.parametrize("name", sorted(models()))
def test_every_shipped_model_is_named_from_its_own_registers_never_another(name: str) -> None:
    meter = FakeMeter(registers_of(models()[name]))
    result = identify(9, meter, catalog=models(), nominal_voltage=230.0)
    assert result is not None
    if result.model is None:  # only an honest tie with a model whose registers read the same
        assert result.status == "ambiguous" and name in result.candidates, result
    else:
        assert result.model == name, result
    probes = {(p[0].function, p[0].start, p[0].count) for p in map(probe_plan, models().values())}
    assert len(meter.requests) <= len(probes) + 2 + 2 * len(result.candidates)


def test_a_probe_plan_joins_only_adjoining_registers_and_keeps_two_check_requests_at_most() -> None:
    for model in models().values():
        plan = probe_plan(model)
        assert model.points[model.probe.measurement] in plan[0].points
        assert len(plan) <= 3
        for block in plan:
            # Holes only inside one point's own span (a value and its exponent register), never between.
            spans = {a for p in block.points for a in range(p.registers[0], p.registers[-1] + 1)}
            assert spans == set(range(block.start, block.start + block.count)), (model.name, block)
            assert block.count <= model.max_registers


def test_judge_prefers_all_checks_passing_then_the_most_plausible_points() -> None:
    fine = Check("voltage_l1_n", 230.0, "check", 207.0, 253.0)
    off = Check("voltage_l2_n", 0.0, "check", 207.0, 253.0)
    result = judge(3, {"a": [fine], "b": [fine, fine], "c": [fine, fine, off]})
    assert (result.model, result.status, result.candidates) == ("b", "preferred", ("b", "a"))
    assert result.verdict == "identified; a fit less well"
    assert judge(3, {}).status == "unknown"
    assert judge(3, {"c": [fine, off]}).verdict == "probe fits c, but implausible: voltage_l2_n 0 V"


def test_an_extra_check_counts_a_value_for_refuses_a_refusal_and_ignores_a_zero() -> None:
    assert (Check("current_n", 3.2).ok, Check("current_n", 3.2).refutes) == (True, False)
    assert (Check("current_n", 0.0).ok, Check("current_n", 0.0).refutes) == (False, False)
    assert (Check("current_n", None).ok, Check("current_n", None).refutes) == (False, True)


@pytest.mark.parametrize("text, units", [("1-247", range(1, 248)), ("17", [17]), ("3-5", [3, 4, 5])])
def test_units_parse_as_a_range_or_one_id(text: str, units: range) -> None:
    assert list(parse_units(text)) == list(units)


@pytest.mark.parametrize("text", ["0-5", "5-3", "248", "1-300", "x", ""])
def test_units_outside_1_to_247_or_malformed_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_units(text)
