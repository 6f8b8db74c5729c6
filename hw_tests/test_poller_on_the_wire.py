"""The agent's poller on the timing-true emulated bus: long answers and the timeout budget."""

from __future__ import annotations

import time

from agent.config import BusConfig, MeterConfig
from agent.inputs.modbus_rtu.bus import rtu_poller
from agent.meters import LineTiming, models
from hw_tests.emulator import start_bus


def test_a_long_answer_fits_a_short_first_byte_budget() -> None:
    # A Janitza UMG is read in one 78-register request: the answer alone takes (5 + 156) bytes
    # × 1.04 ms = 168 ms at 9600 Bd, far beyond the 50 ms the meter gets to start answering.
    model = models()["janitza-umg96rm"]
    with start_bus([("janitza-umg96rm", 1)], baudrate=9600) as bus:
        meter = MeterConfig("umg", model, 1, 10, 10)
        poller = rtu_poller(BusConfig("rtu", bus.port, 9600, "N", 1, 50, 10, (meter,)))
        poller.open()
        try:
            assert [b.count for b in poller.plan("umg")] == [78]
            started = time.monotonic()
            result = poller.read("umg")
            elapsed = time.monotonic() - started
        finally:
            poller.close()
    assert {r.quality for r in result.readings} == {"good"}
    assert elapsed >= LineTiming(9600).transaction_s(78, 0.02) * 0.95


def test_a_silent_meter_costs_the_budget_plus_the_wire_time_not_seconds() -> None:
    model = models()["eastron-sdm630"]
    with start_bus([("eastron-sdm630", 1)], baudrate=9600) as bus:
        meter = MeterConfig("gone", model, 9, 10, 10)  # nobody answers to unit 9
        poller = rtu_poller(BusConfig("rtu", bus.port, 9600, "N", 1, 100, 10, (meter,)))
        poller.open()
        try:
            started = time.monotonic()
            result = poller.read("gone")
            elapsed = time.monotonic() - started
        finally:
            poller.close()
    assert result.silent and {r.quality for r in result.readings} == {"bad"}
    # One request only (the rest are skipped after silence): 100 ms + its 187 ms of wire time.
    assert elapsed < 0.1 + LineTiming(9600).transaction_s(80) + 0.15
