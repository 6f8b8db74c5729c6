"""Emulated meters: physically consistent values, exact energy integration, register images."""

from __future__ import annotations

import math

import pytest

from agent.meters import decode_registers, models
from agent.meters._model import model_from_table
from hw_tests.emulator import EmulatedMeter, scaled_clock
from hw_tests.emulator.plant import UnreadableRegisters, float32


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def meter(*, clock: FakeClock | None = None, strict_holes: bool = False) -> EmulatedMeter:
    return EmulatedMeter(models()["chint-dtsu666"], 1, base_kw=6.0, seed=7,
                         clock=clock or FakeClock(), strict_holes=strict_holes)


def test_phase_values_are_consistent_with_p_equals_u_i_pf() -> None:
    v = meter().values(3600.0)
    for ph in ("l1", "l2", "l3"):
        assert 220 < v[f"voltage_{ph}_n"] < 240
        assert v[f"active_power_{ph}"] == pytest.approx(
            v[f"voltage_{ph}_n"] * v[f"current_{ph}"] * v[f"power_factor_{ph}"], rel=1e-12)
        assert v[f"apparent_power_{ph}"] ** 2 == pytest.approx(
            v[f"active_power_{ph}"] ** 2 + v[f"reactive_power_{ph}"] ** 2, rel=1e-9)
    assert v["active_power_total"] == pytest.approx(sum(v[f"active_power_l{i}"] for i in (1, 2, 3)))
    assert v["voltage_l1_l2"] == pytest.approx(math.sqrt(3) * 230, rel=0.03)
    assert v["frequency"] == pytest.approx(50, abs=0.1)
    assert 0 < v["current_n"] < max(v[f"current_l{i}"] for i in (1, 2, 3))


def test_power_follows_a_daily_profile_around_base_kw() -> None:
    m = meter()
    day = [m.values(h * 3600.0)["active_power_total"] for h in range(24)]
    assert sum(day) / 24 == pytest.approx(6000, rel=0.1)
    assert max(day) - min(day) > 0.3 * 6000  # it swings over the day, not a flat line


def test_energy_integrates_power_over_emulated_time() -> None:
    m = meter()
    t0, dt = 7200.0, 60.0
    before, after = m.values(t0), m.values(t0 + dt)
    mean_w = sum(m.values(t0 + k * dt / 10)["active_power_total"] for k in range(11)) / 11
    delta = after["active_energy_import"] - before["active_energy_import"]
    assert delta == pytest.approx(mean_w * dt / 3.6e6, rel=0.02)  # noise is 1 %, averaged
    assert after["active_energy_import"] == pytest.approx(
        sum(after[f"active_energy_import_l{i}"] for i in (1, 2, 3)), rel=1e-12)
    assert after["active_energy_export"] == before["active_energy_export"]
    assert after["reactive_energy_import"] > before["reactive_energy_import"]


def test_counters_never_run_backwards_even_if_the_clock_does() -> None:
    clock = FakeClock(1000.0)
    m = meter(clock=clock)
    first = m.values()["active_energy_import"]
    clock.t = 10.0
    assert m.values()["active_energy_import"] >= first


def test_scaled_clock_runs_speedup_times_faster() -> None:
    base = FakeClock(50.0)
    clock = scaled_clock(60, base=base)
    base.t = 52.5
    assert clock() == 150.0
    with pytest.raises(ValueError):
        scaled_clock(0)


def test_registers_hold_value_over_scale_and_report_the_decoded_energy() -> None:
    m = meter()
    registers, energy = m.read_registers(3, 0x2006, 2)
    assert decode_registers(registers, "float32") * 0.1 == pytest.approx(230, abs=10)
    assert energy is None
    registers, energy = m.read_registers(3, 0x101E, 12)
    assert energy is not None
    assert energy == decode_registers(registers[:2], "float32") == float32(energy)


def test_energy_is_served_only_when_the_read_holds_the_whole_value() -> None:
    assert meter().read_registers(3, 0x101F, 3)[1] is None


def test_tolerant_meter_reads_holes_inside_its_map_as_zero() -> None:
    registers, _ = meter().read_registers(3, 0x2020, 12)  # 0x2022..0x2029 are undefined
    assert registers[2:10] == [0] * 8 and registers[0:2] != [0, 0]


@pytest.mark.parametrize("fc, address, count", [
    (3, 0x3000, 2),  # nothing there
    (3, 0x1030, 4),  # past the energy block
    (4, 0x2006, 2),  # right address, wrong function code
])
def test_reads_outside_the_register_map_are_rejected(fc: int, address: int, count: int) -> None:
    with pytest.raises(UnreadableRegisters):
        meter().read_registers(fc, address, count)


@pytest.mark.parametrize("address, count", [(0x2020, 12), (0x2007, 2)])
def test_strict_meter_rejects_holes_and_cut_values(address: int, count: int) -> None:
    with pytest.raises(UnreadableRegisters):
        meter(strict_holes=True).read_registers(3, address, count)
    assert len(meter(strict_holes=True).read_registers(3, 0x2000, 0x22)[0]) == 0x22


def test_served_energy_is_remembered_first_last_and_count() -> None:
    m = meter()
    for kwh in (10.5, 11.0, 11.25):
        m.record_served(kwh)
    truth = m.truth()
    assert (truth.first, truth.last, truth.count, truth.delta) == (10.5, 11.25, 3, 0.75)
    assert list(m.served) == [10.5, 11.0, 11.25]


def test_every_shipped_model_can_be_emulated() -> None:
    for name, model in models().items():
        m = EmulatedMeter(model, 3, seed=1, clock=FakeClock(10.0))
        for point in model.points.values():
            registers, _ = m.read_registers(point.function, point.address, point.count)
            value = decode_registers(registers, point.value_type, point.word_order) * point.scale
            assert math.isfinite(value), (name, point.measurement)


def test_integer_model_with_scale_serves_energy_as_the_agent_decodes_it() -> None:
    model = model_from_table("int-meter", {
        "manufacturer": "Test", "description": "integer map", "source": "unit test",
        "max_registers": 20, "turnaround_ms": 5, "word_order": "CDAB",
        "probe": {"measurement": "voltage_l1_n", "low": 90, "high": 300},
        "points": {
            "voltage_l1_n": {"fc": 4, "address": 0, "type": "uint16", "scale": 0.1},
            "active_power_total": {"fc": 4, "address": 1, "type": "int32", "scale": 1},
            "active_energy_import": {"fc": 4, "address": 10, "type": "uint32", "scale": 0.01},
        }}, "test")
    m = EmulatedMeter(model, 9, base_kw=3, seed=2, clock=FakeClock(500.0))
    registers, served = m.read_registers(4, 0, 12)
    assert registers[0] == round(m.values(500.0)["voltage_l1_n"] * 10)
    assert served == decode_registers(registers[10:12], "uint32", "CDAB") * 0.01
    assert served == pytest.approx(m.values(500.0)["active_energy_import"], abs=0.01)
    assert registers[3:10] == [0] * 7  # a bridged hole
