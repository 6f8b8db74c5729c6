"""Meter models as data: every shipped file validates, and known register bytes decode right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.meters import (Exponent, LineTiming, Point, SignBit, decode_registers, encode_value,
                          models, plan_reads, register_count)
from agent.meters._decode import TYPES, WORD_ORDERS
from agent.meters._model import MODELS_DIR, load_model_file, model_from_table
from nengtan.errors import ConfigError
from nengtan.measurements import VOCABULARY

FRAMES = json.loads((Path(__file__).parents[2] / "vectors" / "modbus_rtu_frames.json").read_text())


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_model_file_validates_and_names_its_source(path: Path) -> None:
    model = load_model_file(path)
    assert model.source and model.manufacturer
    assert set(model.points) <= set(VOCABULARY)
    assert model.probe.measurement in model.points
    ends = sorted((p.address, p.end, p.function) for p in model.points.values())
    for (_a_start, a_end, a_fc), (b_start, _, b_fc) in zip(ends, ends[1:]):
        assert a_fc != b_fc or a_end <= b_start, f"{path.stem}: overlapping points at {b_start:#x}"


@pytest.mark.parametrize("case", FRAMES["decode"], ids=lambda c: f"{c['type']}-{c['expected']}")
def test_register_vectors_shared_with_micro_decode_identically_here(case: dict[str, object]) -> None:
    value = decode_registers(case["registers"], str(case["type"]), str(case["word_order"]))  # type: ignore[arg-type]
    assert value == pytest.approx(case["expected"], abs=float(case.get("tol", 0) or 0))  # type: ignore[arg-type]


@pytest.mark.parametrize("registers, model, measurement, expected", [
    # DTSU666 stores 0.1 V: raw float 2301.0 at 0x2006 is 230.1 V (0x450FD000 = 2301.0).
    ([0x450F, 0xD000], "chint-dtsu666", "voltage_l1_n", 230.1),
    # DTSU666 current in mA: raw 5250.0 (0x45A41000) is 5.25 A.
    ([0x45A4, 0x1000], "chint-dtsu666", "current_l1", 5.25),
    # SDM630 energy in kWh, float32 ABCD: 0x4499_A000 = 1229.0 kWh.
    ([0x4499, 0xA000], "eastron-sdm630", "active_energy_import", 1229.0),
    # SDM630 frequency: 0x4248_0000 = 50.0 Hz.
    ([0x4248, 0x0000], "eastron-sdm630", "frequency", 50.0),
])
def test_golden_register_bytes_decode_to_engineering_units(
        registers: list[int], model: str, measurement: str, expected: float) -> None:
    point = models()[model].points[measurement]
    value = decode_registers(registers, point.value_type, point.word_order) * point.scale
    assert value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("value_type", TYPES)
@pytest.mark.parametrize("order", WORD_ORDERS)
def test_encode_and_decode_are_inverse_for_every_type_and_word_order(value_type: str, order: str) -> None:
    value = -1234.5 if value_type.startswith("float") else (1234 if value_type.startswith("u") else -1234)
    assert decode_registers(encode_value(value, value_type, order), value_type, order) == value


def test_word_orders_differ_as_their_names_say() -> None:
    regs = encode_value(0x11223344, "uint32", "ABCD")
    assert regs == [0x1122, 0x3344]
    assert encode_value(0x11223344, "uint32", "CDAB") == [0x3344, 0x1122]
    assert encode_value(0x11223344, "uint32", "BADC") == [0x2211, 0x4433]
    assert encode_value(0x11223344, "uint32", "DCBA") == [0x4433, 0x2211]


def test_an_sdm630_is_read_in_one_request_at_the_eastron_limit() -> None:
    model = models()["eastron-sdm630"]
    blocks = plan_reads(model.points.values(), max_registers=model.max_registers,
                        timing=LineTiming(9600), turnaround_s=0.02)
    assert [(b.function, b.start, b.count) for b in blocks] == [(4, 0x0000, 80)]


def test_the_planner_bridges_a_cheap_hole_and_splits_an_expensive_one() -> None:
    model = models()["chint-dtsu666"]
    points = [model.points[m] for m in ("voltage_l1_l2", "voltage_l1_n", "frequency")]
    # At 9600 8N1 a register costs 2.08 ms, a new request ~13·1.04 + 3.6 + 20 ms = 37.2 ms:
    # the 4-register hole 0x2002..0x2005 is bridged, the 60-register hole before 0x2044 is not.
    blocks = plan_reads(points, max_registers=125, timing=LineTiming(9600), turnaround_s=0.02)
    assert [(b.start, b.count) for b in blocks] == [(0x2000, 8), (0x2044, 2)]
    # Never more than the model's limit, whatever the holes cost.
    tight = plan_reads(points, max_registers=4, timing=LineTiming(9600), turnaround_s=10.0)
    assert all(b.count <= 4 for b in tight)


def test_line_timing_matches_the_worked_numbers_in_the_reference() -> None:
    # meters.md §2.4: an 80-register read at 9600 8N1 takes 187.5 ms with ideal turnaround.
    assert LineTiming(9600).transaction_s(80) == pytest.approx(0.1875, abs=2e-4)
    assert LineTiming(19200, "E").transaction_s(80) == pytest.approx(0.1031, abs=2e-4)
    assert LineTiming(115200).transaction_s(80) == pytest.approx(0.0185, abs=2e-4)


def _model(points: dict[str, object], **top: object) -> dict[str, object]:
    return {"manufacturer": "Test", "description": "d", "source": "unit test", "max_registers": 20,
            "turnaround_ms": 5, "probe": {"measurement": "frequency", "low": 45, "high": 55},
            "points": {"frequency": {"fc": 3, "address": 0, "type": "uint16", "scale": 0.01},
                       **points}, **top}


def _problems(points: dict[str, object], **top: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        model_from_table("m", _model(points, **top), "test")
    return list(caught.value.problems)


@pytest.mark.parametrize("point, expected", [
    ({"ratio": "ct"}, "At 'points.voltage_l1_n.ratio': 'ct' does not apply to a value in 'V'"),
    ({"ratio": "kv"}, "At 'points.voltage_l1_n.ratio': must be one of ct, pt, ctpt"),
    ({"exponent": {"address": 5, "byte": "middle"}}, "At 'points.voltage_l1_n.exponent.byte'"),
    ({"exponent": {"address": 10, "byte": "high"}}, "must not be one of the value's own registers"),
    ({"exponent": {"byte": "high"}}, "At 'points.voltage_l1_n.exponent.address': required"),
    ({"exponent": {"address": 5, "byte": "high", "offset": 1.5}}, "exponent.offset"),
    ({"exponent": {"address": 5, "byte": "high", "base": 2}}, "exponent.base': unknown key"),
    ({"exponent": 4}, "At 'points.voltage_l1_n.exponent': must be a table"),
    ({"sign": {"address": 5, "bit": 16}}, "At 'points.voltage_l1_n.sign.bit': must be a bit number"),
    ({"type": "int16", "sign": {"address": 5, "bit": 0}}, "At 'points.voltage_l1_n.sign': needs an unsigned"),
    ({"type": "float32", "invalid": "max"}, "At 'points.voltage_l1_n.invalid': applies to integer"),
    ({"invalid": "min"}, "At 'points.voltage_l1_n.invalid': 'min' is not one of none, max"),
    ({"address": 0xFFFF, "type": "uint32"}, "runs past 0xFFFF"),
    ({"scale": float("inf")}, "At 'points.voltage_l1_n.scale': must be a finite, non-zero number"),
    ({"fc": 3.0}, "At 'points.voltage_l1_n.fc'"),
    ({"exponent": {"address": 40, "byte": "high"}}, "span 31, more than max_registers (20)"),
])
def test_point_extensions_are_validated_with_their_path(point: dict[str, object], expected: str) -> None:
    raw = {"fc": 3, "address": 10, "type": "uint16", "scale": 0.1} | point
    problems = _problems({"voltage_l1_n": raw})
    assert any(expected in p for p in problems), problems


def test_valid_extensions_load_into_the_point() -> None:
    model = model_from_table("m", _model({
        "active_power_total": {"fc": 3, "address": 10, "type": "uint16",
                               "exponent": {"address": 2, "byte": "high", "offset": -4},
                               "sign": {"address": 2, "bit": 3}, "ratio": "ctpt"},
        "current_l1": {"fc": 3, "address": 11, "type": "uint16", "ratio": "ct",
                       "exponent": {"address": 1, "byte": "word"}},
    }), "test")
    power = model.points["active_power_total"]
    assert (power.ratio, power.exponent, power.sign) == ("ctpt", Exponent(2, "high", -4), SignBit(2, 3))
    assert power.registers == (2, 10)
    assert model.points["current_l1"].exponent == Exponent(1, "word", 0)
    assert model.points["frequency"].registers == (0,)


def test_a_model_wide_invalid_marker_applies_to_integer_points_only() -> None:
    model = model_from_table("m", _model({"voltage_l1_n": {"fc": 3, "address": 2, "type": "float32"},
                                          "current_l1": {"fc": 3, "address": 4, "type": "uint16",
                                                         "invalid": "none"}},
                                         invalid="max"), "test")
    assert model.points["frequency"].invalid == "max"
    assert model.points["voltage_l1_n"].invalid is None
    assert model.points["current_l1"].invalid is None
    assert any("At 'invalid'" in p for p in _problems({}, invalid="all"))


def test_probe_limits_must_be_numbers() -> None:
    problems = _problems({}, probe={"measurement": "frequency", "low": "45", "high": 55, "x": 1})
    assert "At 'probe.low': required, a finite number" in problems
    assert "At 'probe.x': unknown key" in problems


@pytest.mark.parametrize("fields", [
    {"value_type": "int8"}, {"word_order": "abcd"}, {"function": 6}, {"scale": 0.0},
    {"measurement": "flux"}, {"ratio": "pt"}, {"sign": SignBit(0, 1)},
    {"invalid": "max", "value_type": "float32"}, {"exponent": Exponent(0, "high")},
])
def test_points_check_themselves_when_built_in_code(fields: dict[str, object]) -> None:
    base: dict[str, object] = {"measurement": "current_l1", "function": 3, "address": 0,
                               "value_type": "uint16", "scale": 1.0, "word_order": "ABCD"}
    with pytest.raises(ValueError):
        Point(**(base | fields))  # type: ignore[arg-type]


def test_decode_registers_and_encode_value_reject_unknown_names_with_value_error() -> None:
    for call in (lambda: decode_registers([0], "int8"), lambda: decode_registers([0, 0], "uint32", "XYZW"),
                 lambda: decode_registers([0x10000], "uint16"), lambda: decode_registers([-1], "uint16"),
                 lambda: encode_value(1, "int8"), lambda: encode_value(70000, "uint16"),
                 lambda: encode_value(float("nan"), "int32"), lambda: register_count("bogus")):
        with pytest.raises(ValueError):
            call()
