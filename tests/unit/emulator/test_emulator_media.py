"""Emulated steam, gas and water meters: counters integrate the served flow, the line state is
physically consistent, and every counter put on the wire is remembered as ground truth."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient

from agent.meters import decode_registers, models
from agent.meters._model import model_from_table
from hw_tests.emulator import EmulatedMeter, counter_truth, start_bus, write_truth
from hw_tests.emulator.media import (
    GAS_MEASUREMENTS,
    STEAM_MEASUREMENTS,
    WATER_MEASUREMENTS,
    Profile,
    line_factor,
    medium_for,
    saturation_temperature_c,
)

SPEEDUP = 600.0
STEAM, GAS = 1, 2


def at(t: float) -> Callable[[], float]:
    return lambda: t


def steam(seed: int = 4) -> EmulatedMeter:
    return EmulatedMeter(models()["spirax-sarco-tva"], STEAM, seed=seed, clock=at(0.0))


def gas(seed: int = 4) -> EmulatedMeter:
    return EmulatedMeter(models()["fuxin-gas-flow-totalizer"], GAS, seed=seed, clock=at(0.0))


def simpson(f: Callable[[float], float], a: float, b: float, n: int = 600) -> float:
    h = (b - a) / n
    inner = sum((4 if k % 2 else 2) * f(a + k * h) for k in range(1, n))
    return (f(a) + inner + f(b)) * h / 3


def test_a_profile_total_is_the_exact_integral_of_its_rate() -> None:
    p = Profile(mean=5.0, a1=0.4, a2=0.1, phi1=1.0, phi2=2.5)
    t0, t1 = 3_000.0, 3_000.0 + 9 * 3600.0  # nine hours, across the daily swing
    # rate is per hour and t in seconds, so the integral over seconds is divided by 3600.
    assert p.total(t1) - p.total(t0) == pytest.approx(simpson(p.rate, t0, t1) / 3600, rel=1e-10)
    assert p.total(0.0) == 0.0


def test_steam_mass_integrates_the_mass_flow_served() -> None:
    m = steam()
    t0, dt = 7_200.0, 3_600.0
    flows = [m.values(t0 + k * dt / 60)["mass_flow"] for k in range(61)]  # 1 % noise each
    delta = m.values(t0 + dt)["steam_mass"] - m.values(t0)["steam_mass"]
    # One hour at the mean of the served t/h; the noise averages out to well under 1 %.
    assert delta == pytest.approx(sum(flows) / len(flows) * 1.0, rel=0.01)
    assert delta > 0


def test_heat_is_steam_mass_times_the_saturated_steam_enthalpy() -> None:
    v = steam().values(5_000.0)
    # hg at 800 kPa abs = 2768.3 kJ/kg = 2.7683 GJ/t; both totals started together.
    assert v["heat_energy"] == pytest.approx(v["steam_mass"] * 2.7683, rel=1e-12)
    # 1 t/h × 2.7683 GJ/t = 2.7683 GJ/h = 2.7683e6 kJ / 3600 s = 768.97 kW.
    assert v["heat_power"] == pytest.approx(v["mass_flow"] * 768.972222, rel=1e-6)


def test_steam_temperature_is_the_saturation_temperature_of_the_pressure() -> None:
    # IAPWS-IF97 against the steam tables: 99.97 °C at 101.325 kPa, 170.41 °C at 800 kPa.
    assert saturation_temperature_c(101.325) == pytest.approx(99.974, abs=0.002)
    assert saturation_temperature_c(800.0) == pytest.approx(170.41, abs=0.01)
    for t in (0.0, 20_000.0, 50_000.0):
        v = steam().values(t)
        assert 600 < v["pressure_gauge"] < 800  # around 0.7 MPa gauge
        assert v["pressure_absolute"] == pytest.approx(v["pressure_gauge"] + 101.325)
        assert v["temperature"] == pytest.approx(saturation_temperature_c(v["pressure_absolute"]))


def test_gas_line_volume_is_the_standard_volume_at_line_pressure_and_temperature() -> None:
    m = gas()
    before, after = m.values(1_000.0), m.values(1_000.0 + 6 * 3600.0)
    # V_line / V_std = (p_ref / p_abs) × (T_line / T_ref), p_ref 101.325 kPa, T_ref 293.15 K;
    # from the served (noisy) pressure and temperature, so only to their noise.
    k = (101.325 / after["pressure_absolute"]) * ((after["temperature"] + 273.15) / 293.15)
    d_line = after["gas_volume"] - before["gas_volume"]
    d_std = after["gas_volume_std"] - before["gas_volume_std"]
    assert d_line / d_std == pytest.approx(k, rel=1e-3)
    assert after["volume_flow"] / after["volume_flow_std"] == pytest.approx(k, rel=1e-3)
    assert k < 1  # above atmospheric pressure, a line m3 holds more than a standard one
    # A worked case: 200 kPa gauge = 301.325 kPa abs, 15 °C: 101.325/301.325 × 288.15/293.15
    # = 0.33626 × 0.98294 = 0.33052.
    assert line_factor(301.325, 15.0) == pytest.approx(0.33052, rel=1e-4)


def test_gas_standard_volume_integrates_the_standard_flow() -> None:
    m = gas()
    t0, dt = 40_000.0, 3_600.0
    flows = [m.values(t0 + k * dt / 60)["volume_flow_std"] for k in range(61)]
    delta = m.values(t0 + dt)["gas_volume_std"] - m.values(t0)["gas_volume_std"]
    assert delta == pytest.approx(sum(flows) / len(flows), rel=0.01)


def test_a_water_meter_counts_the_volume_its_flow_integrates() -> None:
    model = model_from_table("water-meter", {
        "manufacturer": "Test", "description": "water", "source": "unit test",
        "max_registers": 20, "turnaround_ms": 5, "word_order": "ABCD",
        "probe": {"measurement": "temperature", "low": 0, "high": 40},
        "points": {"water_volume": {"fc": 3, "address": 0, "type": "float32"},
                   "volume_flow": {"fc": 3, "address": 2, "type": "float32"},
                   "temperature": {"fc": 3, "address": 4, "type": "float32"}}}, "test")
    m = EmulatedMeter(model, 5, seed=3, clock=at(0.0))
    flows = [m.values(k * 60.0)["volume_flow"] for k in range(61)]
    delta = m.values(3_600.0)["water_volume"] - m.values(0.0)["water_volume"]
    assert delta == pytest.approx(sum(flows) / len(flows), rel=0.01) and delta > 0


def test_only_meters_mapping_non_electric_counters_leave_the_electrical_profile() -> None:
    kinds = {name: type(medium_for(model, 1)).__name__ for name, model in models().items()}
    assert kinds["spirax-sarco-tva"] == "SteamLine"
    assert kinds["fuxin-gas-flow-totalizer"] == "GasSupply"
    media = STEAM_MEASUREMENTS | GAS_MEASUREMENTS | WATER_MEASUREMENTS
    for name, model in models().items():
        if not set(model.points) & media:
            assert kinds[name] == "NoneType", name


def test_a_read_reports_every_counter_it_carries_whole_as_the_agent_decodes_it() -> None:
    m = EmulatedMeter(models()["spirax-sarco-tva"], STEAM, seed=4, clock=at(9_000.0))
    registers, counters = m.read(3, 0, 9)
    # steam_mass: uint32 kg, low word first (CDAB), × 0.001 t; heat_energy: uint32 kWh × 0.0036.
    assert counters == {
        "steam_mass": decode_registers(registers[0:2], "uint32", "CDAB") * 0.001,
        "heat_energy": decode_registers(registers[7:9], "uint32", "CDAB") * 0.0036}
    assert counters["steam_mass"] == pytest.approx(m.values(9_000.0)["steam_mass"], abs=0.001)
    assert m.read(3, 1, 3)[1] == {}  # cuts steam_mass, carries no counter whole
    assert m.read_registers(3, 0, 9)[1] is None  # no electrical energy on a steam meter


def test_counters_served_on_the_wire_are_the_ground_truth(
        tmp_path: Path, make_client: Callable[..., ModbusSerialClient]) -> None:
    with start_bus([("spirax-sarco-tva", STEAM), ("fuxin-gas-flow-totalizer", GAS)],
                   speedup=SPEEDUP, seed=1) as bus:
        client = make_client(bus.port)
        decoded: dict[str, list[float]] = {"steam_mass": [], "gas_volume_std": []}
        for _ in range(2):
            r = client.read_holding_registers(0, count=9, device_id=STEAM).registers
            decoded["steam_mass"].append(decode_registers(r[0:2], "uint32", "CDAB") * 0.001)
            r = client.read_holding_registers(0x0A, count=18, device_id=GAS).registers
            decoded["gas_volume_std"].append(decode_registers(r[2:4], "float32"))
            time.sleep(0.3)  # three emulated minutes
        write_truth(bus, tmp_path / "truth.json")
        for unit, name in ((STEAM, "steam_mass"), (GAS, "gas_volume_std")):
            first, last = decoded[name]
            assert last > first
            served = bus.meters[unit].truth(name)
            assert (served.first, served.last, served.count) == (first, last, 2)
            assert counter_truth(tmp_path / "truth.json", unit, name) == served
        assert bus.meters[STEAM].truth().count == 0  # no active_energy_import to serve
        assert counter_truth(tmp_path / "truth.json", STEAM, "water_volume").count == 0
