"""Golden decodes for every shipped model: register words worked out by hand, decoded by the agent.

Each case writes the raw words a meter would send and the arithmetic that turns them into the
measurement's unit, so a wrong scale, type or address in a model file fails here by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.meters import (Exponent, LineTiming, Point, RegisterReader, SignBit, decode_point,
                          decode_registers, encode_value, models, plan_reads, ratio_factor)
from agent.meters._decode import INTEGER_TYPES, TYPES, WORD_ORDERS
from agent.meters._model import EXPONENT_FIELDS, MAX_EXPONENT
from nengtan.measurements import lookup


def reader(registers: Mapping[int, int]) -> RegisterReader:
    """``read(fc, address)`` over one cycle's registers; a missing one raises KeyError."""
    return lambda fc, address: registers[address]


def decode(model: str, measurement: str, registers: Mapping[int, int]) -> float:
    return decode_point(models()[model].points[measurement], reader(registers))


# (model, measurement, {wire address: raw word}, expected value in the measurement's unit)
GOLDEN: list[tuple[str, str, dict[int, int], float]] = [
    # DTSU666 frequency in 0.01 Hz: float32 0x459C_4000 = 5000.0; 5000.0 × 0.01 = 50.0 Hz.
    ("chint-dtsu666", "frequency", {0x2044: 0x459C, 0x2045: 0x4000}, 50.0),
    # DTSU666 power in 0.1 W: float32 0x46B7_4000 = 23456.0; × 0.1 = 2345.6 W.
    ("chint-dtsu666", "active_power_total", {0x2012: 0x46B7, 0x2013: 0x4000}, 2345.6),
    # DDSU666 voltage in V (Tasmota's worked example): 0x4366_3334 = 230.2 V.
    ("chint-ddsu666", "voltage_l1_n", {0x2000: 0x4366, 0x2001: 0x3334}, 230.2),
    # DDSU666 power in kW: 0x3FC0_0000 = 1.5 kW; × 1000 = 1500 W.
    ("chint-ddsu666", "active_power_total", {0x2004: 0x3FC0, 0x2005: 0x0000}, 1500.0),
    # DDSU666 import in kWh: 0x4499_A000 = 1229.0 kWh.
    ("chint-ddsu666", "active_energy_import", {0x4000: 0x4499, 0x4001: 0xA000}, 1229.0),
    # SDM630 reactive power in var: 0xC37A_0000 = -250.0 var.
    ("eastron-sdm630", "reactive_power_total", {0x003C: 0xC37A, 0x003D: 0x0000}, -250.0),
    # SDM630 power factor: 0x3F4C_CCCD = 0.8 (float32 nearest).
    ("eastron-sdm630", "power_factor_total", {0x003E: 0x3F4C, 0x003F: 0xCCCD}, 0.8),
    # SDM120 voltage in V: 0x4366_3334 = 230.2 V.
    ("eastron-sdm120", "voltage_l1_n", {0x0000: 0x4366, 0x0001: 0x3334}, 230.2),
    # SDM120 export in kWh: 0x4120_0000 = 10.0 kWh.
    ("eastron-sdm120", "active_energy_export", {0x004A: 0x4120, 0x004B: 0x0000}, 10.0),
    # SDM72D-M v2 total power in W: 0xC4BB_8000 = -1500.0 W (exporting).
    ("eastron-sdm72dm-v2", "active_power_total", {0x0034: 0xC4BB, 0x0035: 0x8000}, -1500.0),
    # SDM72D-M v2 current in A: 0x4120_0000 = 10.0 A.
    ("eastron-sdm72dm-v2", "current_l2", {0x0008: 0x4120, 0x0009: 0x0000}, 10.0),
    # ADL400 voltage: uint16 0x0961 = 2401; × 0.1 = 240.1 V (secondary side; ratio "pt").
    ("acrel-adl400", "voltage_l1_n", {0x0061: 0x0961}, 240.1),
    # ADL400 current: uint16 0x01F4 = 500; × 0.01 = 5.00 A (secondary side; ratio "ct").
    ("acrel-adl400", "current_l1", {0x0064: 0x01F4}, 5.0),
    # ADL400 import: uint32 0x0001_E240 = 123456; × 0.01 = 1234.56 kWh.
    ("acrel-adl400", "active_energy_import", {0x000A: 0x0001, 0x000B: 0xE240}, 1234.56),
    # ADL400 power: int32 0xFFFF_FC18 = -1000 W.
    ("acrel-adl400", "active_power_l2", {0x0166: 0xFFFF, 0x0167: 0xFC18}, -1000.0),
    # ADL400 power factor: int16 0xFCE0 = -800; × 0.001 = -0.8.
    ("acrel-adl400", "power_factor_total", {0x017F: 0xFCE0}, -0.8),
    # ADW300 voltage: uint16 0x08FC = 2300; × 0.1 = 230.0 V.
    ("acrel-adw300", "voltage_l1_n", {20: 0x08FC}, 230.0),
    # ADW300 power: int32 0xFFFF_F830 = -2000 W.
    ("acrel-adw300", "active_power_total", {36: 0xFFFF, 37: 0xF830}, -2000.0),
    # ADW300 import: int32 0x0000_3039 = 12345; × 0.01 = 123.45 kWh.
    ("acrel-adw300", "active_energy_import", {62: 0x0000, 63: 0x3039}, 123.45),
    # PZ96 voltage: 0x23 = 0x0301 (DPT 3 in the high byte); raw 0x08FD = 2301;
    # 2301 × 10^(3-4) = 230.1 V.
    ("acrel-pz96-e4", "voltage_l1_n", {0x23: 0x0301, 37: 0x08FD}, 230.1),
    # PZ96 current: 0x23 = 0x0301 (DCT 1 in the low byte); raw 0x3039 = 12345;
    # 12345 × 10^(1-4) = 12.345 A.
    ("acrel-pz96-e4", "current_l1", {0x23: 0x0301, 43: 0x3039}, 12.345),
    # PZ96 total power: 0x24 = 0x0508 (DPQ 5; low byte 0b0000_1000 = bit 3 "P" set: negative);
    # raw 0x04D2 = 1234; 1234 × 10^(5-4) = 12340, negative: -12340 W.
    ("acrel-pz96-e4", "active_power_total", {0x24: 0x0508, 49: 0x04D2}, -12340.0),
    # PZ96 power L1 with the same 0x24: bit 0 ("Pa") clear: 1000 × 10^1 = +10000 W.
    ("acrel-pz96-e4", "active_power_l1", {0x24: 0x0508, 46: 0x03E8}, 10000.0),
    # PZ96 total reactive power: 0x24 = 0x0380 (DPQ 3; bit 7 "Q" set); raw 5000;
    # 5000 × 10^(3-4) = 500, negative: -500 var.
    ("acrel-pz96-e4", "reactive_power_total", {0x24: 0x0380, 53: 0x1388}, -500.0),
    # PZ96 import, float32 primary side: 0x4499_A000 = 1229.0 kWh (no decimal point register).
    ("acrel-pz96-e4", "active_energy_import", {71: 0x4499, 72: 0xA000}, 1229.0),
    # iEM3155 total power: float32 0x4120_0000 = 10.0 kW; × 1000 = 10000 W.
    ("schneider-iem3x55", "active_power_total", {3059: 0x4120, 3060: 0x0000}, 10000.0),
    # iEM3155 import: int64 0x0000_0000_0012_D687 = 1234567 Wh; × 0.001 = 1234.567 kWh.
    ("schneider-iem3x55", "active_energy_import",
     {3203: 0x0000, 3204: 0x0000, 3205: 0x0012, 3206: 0xD687}, 1234.567),
    # PM5100 neutral current: float32 0x3F80_0000 = 1.0 A.
    ("schneider-pm5100", "current_n", {3005: 0x3F80, 3006: 0x0000}, 1.0),
    # PM5100 reactive power L1: float32 0xBF00_0000 = -0.5 kvar; × 1000 = -500 var.
    ("schneider-pm5100", "reactive_power_l1", {3061: 0xBF00, 3062: 0x0000}, -500.0),
    # PM5100 reactive export: int64 0x...03E8 = 1000 varh; × 0.001 = 1.0 kvarh.
    ("schneider-pm5100", "reactive_energy_export",
     {3223: 0x0000, 3224: 0x0000, 3225: 0x0000, 3226: 0x03E8}, 1.0),
    # ABB B23 voltage: uint32 0x0000_08FD = 2301; × 0.1 = 230.1 V.
    ("abb-b23", "voltage_l1_n", {0x5B00: 0x0000, 0x5B01: 0x08FD}, 230.1),
    # ABB B23 power: int32 0xFFFF_FF9C = -100; × 0.01 = -1.0 W.
    ("abb-b23", "active_power_total", {0x5B14: 0xFFFF, 0x5B15: 0xFF9C}, -1.0),
    # ABB B23 import: uint64 0x0000_0000_0001_E240 = 123456; × 0.01 = 1234.56 kWh.
    ("abb-b23", "active_energy_import",
     {0x5000: 0x0000, 0x5001: 0x0000, 0x5002: 0x0001, 0x5003: 0xE240}, 1234.56),
    # ABB B23 frequency: uint16 0x1388 = 5000; × 0.01 = 50.0 Hz.
    ("abb-b23", "frequency", {0x5B2C: 0x1388}, 50.0),
    # UMG 96RM voltage: float32 0x4366_3334 = 230.2 V.
    ("janitza-umg96rm", "voltage_l1_n", {19000: 0x4366, 19001: 0x3334}, 230.2),
    # UMG 96RM import: float32 0x4996_B438 = 1234567.0 Wh; × 0.001 = 1234.567 kWh.
    ("janitza-umg96rm", "active_energy_import", {19068: 0x4996, 19069: 0xB438}, 1234.567),
    # TVA steam total, low word first: 0x0001 × 65536 + 0xE240 = 123456 kg; × 0.001 = 123.456 t.
    ("spirax-sarco-tva", "steam_mass", {0: 0xE240, 1: 0x0001}, 123.456),
    # TVA energy total, low word first: 0x0001 × 65536 + 0x86A0 = 100000 kWh;
    # × 0.0036 GJ/kWh = 360.0 GJ.
    ("spirax-sarco-tva", "heat_energy", {7: 0x86A0, 8: 0x0001}, 360.0),
    # TVA pressure "x100 bar g": 0x0320 = 800 → 8.00 bar g = 800 kPa gauge (scale 1).
    ("spirax-sarco-tva", "pressure_gauge", {3: 0x0320}, 800.0),
    # TVA temperature "x10 °C": 0x06D8 = 1752; × 0.1 = 175.2 °C.
    ("spirax-sarco-tva", "temperature", {4: 0x06D8}, 175.2),
    # TVA flow in kg/h: 0x09C4 = 2500; × 0.001 = 2.5 t/h.
    ("spirax-sarco-tva", "mass_flow", {2: 0x09C4}, 2.5),
    # The gas totalizer's own worked answer (FXGasFlow.scl), float32 ABCD:
    # standard total 44 9B 63 92 = 1243.111572265625 m3 (the source prints 1243.1116);
    ("fuxin-gas-flow-totalizer", "gas_volume_std", {0x0C: 0x449B, 0x0D: 0x6392},
     1243.111572265625),
    # line total 4B 3C 61 56 = 12345686.0 m3;
    ("fuxin-gas-flow-totalizer", "gas_volume", {0x0A: 0x4B3C, 0x0B: 0x6156}, 12345686.0),
    # standard flow 40 22 0C 4A = 2.532 m3/h;
    ("fuxin-gas-flow-totalizer", "volume_flow_std", {0x10: 0x4022, 0x11: 0x0C4A}, 2.532),
    # line flow 40 20 00 00 = 2.5 m3/h exactly (the source says 2.53);
    ("fuxin-gas-flow-totalizer", "volume_flow", {0x15: 0x4020, 0x16: 0x0000}, 2.5),
    # temperature 41 AD 31 27 = 21.649 °C (the source rounds to 21.7).
    ("fuxin-gas-flow-totalizer", "temperature", {0x1A: 0x41AD, 0x1B: 0x3127}, 21.649),
]


@pytest.mark.parametrize("model, measurement, registers, expected", GOLDEN,
                         ids=[f"{c[0]}-{c[1]}" for c in GOLDEN])
def test_hand_computed_registers_decode_to_engineering_units(
        model: str, measurement: str, registers: dict[int, int], expected: float) -> None:
    assert decode(model, measurement, registers) == pytest.approx(expected, rel=1e-6)


def test_every_shipped_model_has_at_least_two_golden_decodes() -> None:
    counts = {name: sum(1 for c in GOLDEN if c[0] == name) for name in models()}
    assert {name: n for name, n in counts.items() if n < 2} == {}


def test_integer_decodes_with_a_decimal_scale_are_exact() -> None:
    # Not 240.10000000000002: the exponent divides by 10 rather than multiplying by 0.1.
    assert decode("acrel-pz96-e4", "voltage_l1_n", {0x23: 0x0301, 37: 0x08FD}) == 230.1


# --- CT/PT ratios ---------------------------------------------------------------------------


def test_adl400_current_times_the_ct_ratio_is_the_primary_current() -> None:
    point = models()["acrel-adl400"].points["current_l1"]
    # 500 × 0.01 = 5.00 A on the secondary; a 250/5 CT (ratio 50) makes it 250 A.
    value = decode_point(point, reader({0x0064: 0x01F4})) * ratio_factor(point, ct=50, pt=1)
    assert value == pytest.approx(250.0)


def test_ratio_factor_follows_the_points_ratio_kind() -> None:
    points = models()["acrel-adl400"].points
    assert ratio_factor(points["voltage_l1_n"], ct=50, pt=100) == 100  # voltages × PT
    assert ratio_factor(points["current_l1"], ct=50, pt=100) == 50  # currents × CT
    assert ratio_factor(points["active_power_total"], ct=50, pt=100) == 5000  # power × CT × PT
    assert ratio_factor(points["active_energy_import"], ct=50, pt=100) == 5000
    assert ratio_factor(points["power_factor_total"], ct=50, pt=100) == 1  # no ratio
    assert ratio_factor(points["frequency"], ct=50, pt=100) == 1
    # Primary-side models have no ratio anywhere.
    assert all(p.ratio is None for p in models()["eastron-sdm630"].points.values())


@pytest.mark.parametrize("ct, pt", [(0, 1), (1, -1), (math.nan, 1), (1, math.inf), (True, 1)])
def test_ratio_factor_rejects_ratios_that_are_not_positive_numbers(ct: float, pt: float) -> None:
    with pytest.raises(ValueError):
        ratio_factor(models()["acrel-adl400"].points["current_l1"], ct=ct, pt=pt)


# --- Decimal-point and sign registers (Acrel PZ) --------------------------------------------


def test_pz_points_list_their_decimal_point_and_sign_registers() -> None:
    points = models()["acrel-pz96-e4"].points
    assert points["voltage_l1_n"].registers == (0x23, 37)
    assert points["current_l3"].registers == (0x23, 45)
    assert points["active_power_total"].registers == (0x24, 49)  # exponent and sign share 0x24
    assert points["active_energy_import"].registers == (71, 72)
    # Every register is in the one request the reference plan makes (35..78).
    assert {a for p in points.values() for a in p.registers} <= set(range(35, 79))


def test_a_pz_value_without_its_decimal_point_register_does_not_decode() -> None:
    with pytest.raises(ValueError, match="not read this cycle"):
        decode("acrel-pz96-e4", "voltage_l1_n", {37: 0x08FD})


def test_an_implausible_exponent_does_not_decode() -> None:
    # DPT 0x7F: 10^(127-4) is not a voltage, it is a garbled register.
    with pytest.raises(ValueError, match="exponent"):
        decode("acrel-pz96-e4", "voltage_l1_n", {0x23: 0x7F01, 37: 0x08FD})


def test_exponent_fields_are_signed_and_the_word_form_reads_sunspec_scale_factors() -> None:
    sunssf = Point("active_power_total", 3, 0, "int16", 1.0, "ABCD",
                   exponent=Exponent(address=1, field="word"))
    # 1234 × 10^-2 (0xFFFE = -2) = 12.34 W
    assert decode_point(sunssf, reader({0: 1234, 1: 0xFFFE})) == pytest.approx(12.34)
    # SunSpec's "not implemented" scale factor 0x8000 = -32768 is out of range.
    with pytest.raises(ValueError):
        decode_point(sunssf, reader({0: 1234, 1: 0x8000}))
    low = Point("current_l1", 3, 0, "uint16", 1.0, "ABCD", exponent=Exponent(1, "low", offset=0))
    assert decode_point(low, reader({0: 5, 1: 0x00FF})) == pytest.approx(0.5)  # 0xFF = -1


def test_a_zero_magnitude_with_its_sign_bit_set_reads_as_plain_zero() -> None:
    value = decode("acrel-pz96-e4", "active_power_total", {0x24: 0x0508, 49: 0})
    assert value == 0.0 and math.copysign(1.0, value) == 1.0


# --- "Not available" markers (ABB) ------------------------------------------------------------


@pytest.mark.parametrize("measurement, registers", [
    ("voltage_l1_n", {0x5B00: 0xFFFF, 0x5B01: 0xFFFF}),  # uint32: all ones
    ("active_power_total", {0x5B14: 0x7FFF, 0x5B15: 0xFFFF}),  # int32: 0x7FFF_FFFF
    ("frequency", {0x5B2C: 0xFFFF}),  # uint16
    ("power_factor_l1", {0x5B3B: 0x7FFF}),  # int16
    ("active_energy_import", {0x5000: 0xFFFF, 0x5001: 0xFFFF, 0x5002: 0xFFFF, 0x5003: 0xFFFF}),
])
def test_abb_not_available_markers_do_not_decode(measurement: str, registers: dict[int, int]) -> None:
    with pytest.raises(ValueError, match="not available"):
        decode("abb-b23", measurement, registers)


def test_a_value_next_to_the_marker_still_decodes() -> None:
    # 0xFFFF_FFFE × 0.1: nonsense as a voltage, but not the marker, so the number goes through.
    assert decode("abb-b23", "voltage_l1_n", {0x5B00: 0xFFFF, 0x5B01: 0xFFFE}) == pytest.approx(
        0xFFFF_FFFE * 0.1)


# --- Non-finite values and bad input ----------------------------------------------------------


@pytest.mark.parametrize("words", [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000]],
                         ids=["nan", "inf", "-inf"])
def test_non_finite_float_registers_raise_value_error(words: list[int]) -> None:
    # Schneider and others send NaN for "not available"; the bus reports quality "bad".
    with pytest.raises(ValueError):
        decode("janitza-umg96rm", "frequency", {19050: words[0], 19051: words[1]})


@pytest.mark.parametrize("raw", [-1, 0x10000, 1.5, "12", None, True])
def test_a_register_that_is_not_a_16_bit_word_raises_value_error(raw: object) -> None:
    with pytest.raises(ValueError):
        decode_point(models()["abb-b23"].points["frequency"], lambda fc, a: raw)  # type: ignore[arg-type,return-value]


def test_decode_point_passes_the_points_function_code_to_read() -> None:
    seen: list[tuple[int, int]] = []

    def read(fc: int, address: int) -> int:
        seen.append((fc, address))
        return 0
    decode_point(models()["eastron-sdm630"].points["frequency"], read)
    assert seen == [(4, 0x0046), (4, 0x0047)]


def test_decode_point_rejects_what_is_not_a_point() -> None:
    with pytest.raises(ValueError):
        decode_point("frequency", reader({}))  # type: ignore[arg-type]


# --- The emulator can serve every model but the PZ --------------------------------------------

_SAMPLE = {"V": 230.0, "A": 5.0, "W": 1500.0, "var": 300.0, "VA": 1700.0, "1": 0.9, "Hz": 50.0,
           "kWh": 1234.5, "kvarh": 12.5, "m3": 12345.5, "t": 1234.5, "GJ": 1234.5,
           "m3/h": 25.5, "t/h": 2.5, "kW": 1500.0, "°C": 175.5, "kPa": 800.0}


@pytest.mark.parametrize("name", sorted(models()))
def test_encode_value_of_value_over_scale_serves_each_point(name: str) -> None:
    """What hw_tests/emulator does: ``encode_value(value / scale)`` at ``address``. Exponent and
    sign registers are beyond it, so a PZ is served only where its points need neither."""
    for point in models()[name].points.values():
        if point.exponent is not None or point.sign is not None:
            continue
        value = _SAMPLE[lookup(point.measurement).unit]
        words = encode_value(value / point.scale, point.value_type, point.word_order)
        served = dict(zip(range(point.address, point.end), words))
        assert decode_point(point, reader(served)) == pytest.approx(value, rel=1e-6,
                                                                     abs=abs(point.scale) / 2)


def test_only_the_pz_model_needs_registers_beyond_its_points() -> None:
    needing = {name for name, m in models().items()
               if any(p.registers != tuple(range(p.address, p.end)) for p in m.points.values())}
    assert needing == {"acrel-pz96-e4"}


# --- Read planning ----------------------------------------------------------------------------

#: Requests of the "Reading plan" in shared/reference/meters.md section 1, for comparison.
REFERENCE_PLANS = {
    "abb-b23": [(0x5B00, 62), (0x5000, 8)],
    "acrel-adl400": [(0x0000, 22), (0x0061, 23), (0x0164, 28)],
    "acrel-adw300": [(20, 18), (62, 4)],
    "acrel-pz96-e4": [(35, 44)],
    "chint-ddsu666": [(0x2000, 16), (0x4000, 12)],
    "chint-dtsu666": [(0x2000, 70), (0x101E, 12)],
    "eastron-sdm120": [(0x0000, 80)],
    "eastron-sdm630": [(0x0000, 80)],
    "eastron-sdm72dm-v2": [(0x0000, 80)],
    "janitza-umg96rm": [(19000, 78)],
    "schneider-iem3x55": [(2999, 112), (3203, 24)],
    "schneider-pm5100": [(2999, 112), (3203, 24)],
    # Not in meters.md: the plans stated in the model files' comments.
    "fuxin-gas-flow-totalizer": [(0x0A, 18)],
    "spirax-sarco-tva": [(0, 9)],
}


def _plan(name: str) -> list[tuple[int, int, int]]:
    model = models()[name]
    blocks = plan_reads(model.points.values(), max_registers=model.max_registers,
                        timing=LineTiming(9600), turnaround_s=model.turnaround_ms / 1000)
    return [(b.function, b.start, b.count) for b in blocks]


def test_every_shipped_model_has_a_reference_plan() -> None:
    assert sorted(REFERENCE_PLANS) == sorted(models())


@pytest.mark.parametrize("name", sorted(models()))
def test_planned_reads_respect_max_registers_and_cover_every_point(name: str) -> None:
    model = models()[name]
    plan = _plan(name)
    assert all(count <= model.max_registers for _, _, count in plan)
    for point in model.points.values():
        holders = [b for b in plan if b[0] == point.function and b[1] <= point.address
                   and point.end <= b[1] + b[2]]
        assert len(holders) == 1, f"{name}: {point.measurement} is in {len(holders)} requests"


@pytest.mark.parametrize("name", sorted(models()))
def test_reference_plans_fit_the_models_register_limit(name: str) -> None:
    assert all(count <= models()[name].max_registers for _, count in REFERENCE_PLANS[name])


@pytest.mark.parametrize("name", sorted(models()))
def test_every_register_a_point_needs_comes_from_the_same_request(name: str) -> None:
    model = models()[name]
    plan = _plan(name)
    for point in model.points.values():
        assert any(b[0] == point.function and b[1] <= point.registers[0]
                   and point.registers[-1] < b[1] + b[2] for b in plan), point.measurement


# --- Property tests: only ValueError, and only finite results ---------------------------------


@given(registers=st.lists(st.integers(-2, 0x10001), max_size=5),
       value_type=st.sampled_from([*TYPES, "int8", ""]),
       order=st.sampled_from([*WORD_ORDERS, "abcd", "big"]))
def test_decode_registers_raises_nothing_but_value_error(registers: list[int], value_type: str,
                                                         order: str) -> None:
    try:
        value = decode_registers(registers, value_type, order)
    except ValueError:
        return
    assert isinstance(value, float)


@st.composite
def any_point(draw: st.DrawFn) -> Point:
    value_type = draw(st.sampled_from(TYPES))
    unsigned = value_type in INTEGER_TYPES and not INTEGER_TYPES[value_type][1]
    exponent = draw(st.none() | st.builds(Exponent, st.integers(100, 103),
                                          st.sampled_from(EXPONENT_FIELDS), st.integers(-100, 100)))
    sign = draw(st.none() | st.builds(SignBit, st.integers(100, 103), st.integers(0, 15))) \
        if unsigned else None
    invalid = draw(st.sampled_from([None, "max"])) if value_type in INTEGER_TYPES else None
    scale = draw(st.floats(allow_nan=False, allow_infinity=False).filter(bool))
    return Point("active_power_total", draw(st.sampled_from((3, 4))), 0, value_type, scale,
                 draw(st.sampled_from(WORD_ORDERS)), None, exponent, sign, invalid)


_WORD = st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0, 0x7FFF, 0x8000, 0xFFFF, 0x7F80, 0x7FC0]))


@given(point=any_point(), words=st.lists(_WORD, min_size=104, max_size=104),
       missing=st.sets(st.integers(0, 103), max_size=2))
def test_decode_point_returns_a_finite_number_or_raises_value_error(
        point: Point, words: list[int], missing: set[int]) -> None:
    """Registers 0..3 hold the value and 100..103 any exponent or sign; ``missing`` were not read."""
    registers = {a: w for a, w in enumerate(words) if a not in missing}
    try:
        value = decode_point(point, reader(registers))
    except ValueError:
        return
    assert math.isfinite(value)
    if point.exponent is not None:
        assert abs(point.exponent.power(registers[point.exponent.address])) <= MAX_EXPONENT
