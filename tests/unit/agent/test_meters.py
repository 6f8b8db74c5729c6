"""Meter models as data: every shipped file validates, and known register bytes decode right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.meters import LineTiming, decode_registers, encode_value, models, plan_reads
from agent.meters._decode import TYPES, WORD_ORDERS
from agent.meters._model import MODELS_DIR, load_model_file
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
