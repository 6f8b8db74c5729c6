"""A steam flowmeter and a gas totalizer through the whole chain: emulator on a pty, the agent
daemon, Mosquitto, the receiver, then the monthly report over what the receiver stored.

Factors the report must apply (cloud_receiver/factors/gbt2589.toml and fuels_co2.toml):

- steam: 128.6 kgce/t; 413.93 kgCO2/t (0.11 tCO2/GJ × 3.763 GJ/t);
- natural gas per metered m³ (20 °C), from tables per 0 °C m³: × 273.15/293.15 = 0.9317755415,
  so 1.2143 × 0.9317755415 = 1.1314550401 kgce/m3 and NCV 389.31 GJ/10⁴Nm³ × CC 15.3 tC/TJ
  × OF 0.99 × 44/12 ÷ 10⁴ = 2.162188809 kgCO2/Nm³ × 0.9317755415 = 2.0146746484 kgCO2/m3.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cloud_receiver.accounting.factors import Choice
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.accounting.report import monthly_report
from cloud_receiver.store import open_store
from hw_tests.conftest import energies_match
from hw_tests.emulator import CounterTruth, counter_truth
from hw_tests.emulator.media import STEAM_ENTHALPY_GJ_PER_T
from nengtan.stack import GATEWAY_ID, Stack

CYCLES = 6
METERS = [("steam-main", "spirax-sarco-tva", 1), ("gas-main", "fuxin-gas-flow-totalizer", 2),
          ("main-incomer", "chint-dtsu666", 3)]
UNITS = {meter: unit for meter, _, unit in METERS}
SERIES = [("steam-main", "steam_mass"), ("steam-main", "heat_energy"),
          ("gas-main", "gas_volume_std")]
TZ = "Asia/Shanghai"
PLANT = f"""
[plant]
name = "Boiler house"
timezone = "{TZ}"

[[node]]
id = "co"
kind = "enterprise"
name = "Co."

[[node]]
id = "site"
kind = "site"
name = "Site"
parent = "co"

[[point]]
id = "steam"
node = "site"
gateway = "{GATEWAY_ID}"
meter = "steam-main"
measurement = "steam_mass"
level = 1
energy_type = "steam"
use = "production"

[[point]]
id = "gas"
node = "site"
gateway = "{GATEWAY_ID}"
meter = "gas-main"
measurement = "gas_volume_std"
level = 1
energy_type = "natural_gas"
use = "production"
"""


def served(stack: Stack, meter: str, measurement: str) -> CounterTruth:
    return counter_truth(stack.truth_file, UNITS[meter], measurement)


def counters_match(stack: Stack) -> bool:
    """Every counter series the receiver stored is exactly the values the emulator served."""
    if not stack.receiver_db.exists():
        return False
    store = open_store(stack.receiver_db, create=False)
    try:
        for meter, measurement in SERIES:
            truth = served(stack, meter, measurement)
            stored = [p.value for p in store.counter_points(GATEWAY_ID, meter, measurement)]
            if truth.count < 2 or stored[:1] + stored[-1:] != [truth.first, truth.last]:
                return False
            assert len(stored) == truth.count  # one good reading per value on the wire
    finally:
        store.close()
    return True


def test_steam_and_gas_counters_reach_the_report_as_the_emulator_served_them(
        stack: Stack, tmp_path: Path) -> None:
    stack.meters = list(METERS)
    stack.start_all()
    stack.wait_for(f"{CYCLES} agent cycles", lambda: stack.agent_cycles() >= CYCLES, timeout=30)
    stack.mute_emulator()  # freezes the ground truth
    stack.wait_for("stored counters and energy to match the ground truth",
                   lambda: counters_match(stack) and energies_match(stack), timeout=20)

    truth = {s: served(stack, *s) for s in SERIES}
    steam, heat = truth["steam-main", "steam_mass"], truth["steam-main", "heat_energy"]
    gas = truth["gas-main", "gas_volume_std"]
    assert steam.count >= CYCLES - 1 and steam.delta > 0 and gas.delta > 0
    # The TVA counts kWh (× 0.0036 GJ) of steam mass (kg) × 2.7683 GJ/t: both registers round,
    # so heat tracks mass × enthalpy to a kWh (0.0036 GJ) plus a kg (0.0027683 GJ).
    assert heat.delta == pytest.approx(steam.delta * STEAM_ENTHALPY_GJ_PER_T, abs=0.0036 + 0.003)

    store = open_store(stack.receiver_db, create=False)
    try:
        for (meter, measurement), t in truth.items():
            rollups = store.rollups("15m", gateway=GATEWAY_ID, meter=meter,
                                    measurement=measurement)
            # count served values make count − 1 intervals, whose amounts add up to last − first.
            assert sum(r.intervals for r in rollups) == t.count - 1, (meter, measurement)
            assert math.fsum(r.amount for r in rollups) == pytest.approx(t.delta, abs=1e-6)
            assert store.rollups("1d", gateway=GATEWAY_ID, meter=meter, measurement=measurement)

        first_ms = store.counter_points(GATEWAY_ID, "steam-main", "steam_mass")[0].ts_ms
        month = datetime.fromtimestamp(first_ms / 1000, ZoneInfo(TZ))
        (tmp_path / "plant").mkdir()
        (tmp_path / "plant" / "plant.toml").write_text(PLANT, encoding="utf-8")
        report = monthly_report(store, load_plant(tmp_path / "plant"),
                                Choice("statistical", "henan", 2023), month.year, month.month,
                                now_ms=int(time.time() * 1000))
    finally:
        store.close()

    rows = {p.id: p for p in report.points}
    assert report.conversions["steam"].kgce.value == 128.6
    assert report.conversions["steam"].co2 is not None
    assert report.conversions["steam"].co2.value == 413.93
    assert report.conversions["natural_gas"].kgce.value == pytest.approx(1.1314550401)
    assert report.conversions["natural_gas"].co2 is not None
    assert report.conversions["natural_gas"].co2.value == pytest.approx(2.0146746484)
    for pid, t, kgce, kgco2 in (("steam", steam, 128.6, 413.93),
                                ("gas", gas, 1.1314550401, 2.0146746484)):
        row = rows[pid]
        # amount = last − first served value (scale 1, no events); kgce = amount × kgce/unit,
        # kgCO2 = amount × kgCO2/unit, e.g. 1.5 t of steam → 192.9 kgce and 620.895 kgCO2.
        assert row.amount == pytest.approx(t.delta, abs=1e-6)  # t.delta = t.last − t.first
        assert [(a.value, b.value) for a, b in row.readings] == [(t.first, t.last)]
        assert row.reconciled == pytest.approx(row.amount, abs=1e-6)
        assert row.kgce == pytest.approx(row.amount * kgce, rel=1e-9)
        assert row.kgco2 == pytest.approx(row.amount * kgco2, rel=1e-9)
