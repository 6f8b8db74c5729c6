"""The poller's failure policy, against a scripted client (no port): silence, garbage and
exception replies are told apart and flagged, never passed on as values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pymodbus.exceptions import ModbusIOException

from agent.config import MeterConfig
from agent.meters import encode_value, models
from agent.modbus._poller import ModbusPoller


DEFINED = {a for p in models()["eastron-sdm630"].points.values() for a in p.registers}


@dataclass
class FakeResponse:
    registers: list[int] = field(default_factory=list)
    exception_code: int | None = None

    def isError(self) -> bool:
        return self.exception_code is not None


class ScriptedClient:
    """Serves an SDM630 whose registers hold ``values``; ``mode`` picks a failure."""

    connected = True

    def __init__(self, poller_ref: list[ModbusPoller]) -> None:
        self.mode = "ok"
        self.energy = 1000.0
        self.requests: list[tuple[int, int]] = []
        self._poller = poller_ref

    def connect(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def read_input_registers(self, address: int, *, count: int = 1, device_id: int = 1) -> Any:
        self.requests.append((address, count))
        if self.mode == "silent":
            raise ModbusIOException("no response")
        if self.mode == "garbled":
            self._poller[0].note_traffic(False, b"\x01\x04\xff")
            raise ModbusIOException("bad frame")
        if self.mode.startswith("exception"):
            return FakeResponse(exception_code=int(self.mode[-1]))
        wanted = set(range(address, address + count))
        if self.mode == "holes" and not wanted <= DEFINED:
            return FakeResponse(exception_code=2)
        if self.mode == "no-frequency" and 0x0046 in wanted:
            return FakeResponse(exception_code=2)
        registers = [0] * count
        for offset in range(0, count, 2):
            value = self.energy if address + offset == 0x0048 else 230.0
            registers[offset:offset + 2] = encode_value(value, "float32")
        return FakeResponse(registers)

    def read_holding_registers(self, address: int, *, count: int = 1, device_id: int = 1) -> Any:
        raise AssertionError("an SDM630 is read with FC04")


@pytest.fixture
def setup() -> tuple[ModbusPoller, ScriptedClient]:
    ref: list[ModbusPoller] = []
    client = ScriptedClient(ref)
    meter = MeterConfig("m", models()["eastron-sdm630"], 1, 10, 10)
    poller = ModbusPoller(client, [meter], timing=None, clock_ms=lambda: 42)
    ref.append(poller)
    return poller, client


def test_a_good_read_returns_every_point_with_quality_good(
        setup: tuple[ModbusPoller, ScriptedClient]) -> None:
    poller, client = setup
    result = poller.read("m")
    assert not result.silent and client.requests == [(0, 80)]
    assert {r.quality for r in result.readings} == {"good"}
    energy = {r.measurement: r.value for r in result.readings}["active_energy_import"]
    assert energy == 1000.0


@pytest.mark.parametrize("mode, counter", [("silent", "silent"), ("garbled", "garbled"),
                                           ("exception4", "exceptions")])
def test_failures_are_flagged_bad_and_counted_by_kind(
        setup: tuple[ModbusPoller, ScriptedClient], mode: str, counter: str) -> None:
    poller, client = setup
    client.mode = mode
    result = poller.read("m")
    assert {(r.quality, r.value) for r in result.readings} == {("bad", None)}
    assert result.silent == (mode == "silent")  # only silence makes a meter back off
    assert getattr(poller.stats()["m"], counter) == 1


def test_an_energy_counter_that_goes_backwards_is_flagged_suspect(
        setup: tuple[ModbusPoller, ScriptedClient]) -> None:
    poller, client = setup
    poller.read("m")
    client.energy = 999.0
    energy = next(r for r in poller.read("m").readings if r.measurement == "active_energy_import")
    assert (energy.value, energy.quality) == (999.0, "suspect")


def test_a_meter_that_refuses_holes_is_read_in_runs_from_the_same_cycle_on(
        setup: tuple[ModbusPoller, ScriptedClient]) -> None:
    poller, client = setup
    client.mode = "holes"  # like a PM5340: exception 02 for any read that covers a hole
    first = poller.read("m")
    assert client.requests[0] == (0, 80) and len(client.requests) > 2  # split in the same cycle
    assert {r.quality for r in first.readings} == {"good"}
    client.requests.clear()
    assert {r.quality for r in poller.read("m").readings} == {"good"}
    assert (0, 80) not in client.requests  # no more bridging for this meter


def test_a_meter_wide_refusal_is_flagged_bad_and_changes_nothing_about_the_plan(
        setup: tuple[ModbusPoller, ScriptedClient]) -> None:
    poller, client = setup
    client.mode = "exception2"  # e.g. a meter in a configuration menu refuses everything
    assert {r.quality for r in poller.read("m").readings} == {"bad"}
    # The block, then its five runs of adjacent points; never one request per point (27).
    assert len(client.requests) == 1 + 5
    client.mode = "ok"
    client.requests.clear()
    assert {r.quality for r in poller.read("m").readings} == {"good"}
    assert client.requests == [(0, 80)]  # still one request: nothing was learnt from it


def test_a_point_refused_alone_rests_and_is_retried_later(
        setup: tuple[ModbusPoller, ScriptedClient], monkeypatch: pytest.MonkeyPatch) -> None:
    poller, client = setup
    client.mode = "no-frequency"
    first = {r.measurement: r.quality for r in poller.read("m").readings}
    assert first["frequency"] == "bad" and first["voltage_l1_n"] == "good"
    second = {r.measurement for r in poller.read("m").readings}
    assert "frequency" not in second and "voltage_l1_n" in second  # resting
    assert poller.stats()["m"].rejected_ranges == ["fc4 0x0046"]
    monkeypatch.setattr("agent.modbus._poller.REFUSED_REST_S", 0.0)
    client.mode = "ok"
    poller.read("m")  # the first rest (600 s) still runs; end it as time would
    poller._state["m"].suspended["frequency"] = (0.0, 1)
    assert {r.measurement: r.quality for r in poller.read("m").readings}["frequency"] == "good"


def test_counters_only_cycles_read_only_the_counter_registers(
        setup: tuple[ModbusPoller, ScriptedClient]) -> None:
    poller, client = setup
    result = poller.read("m", instants=False, counters=True)
    assert {r.measurement for r in result.readings} == {
        "active_energy_import", "active_energy_export", "reactive_energy_import", "reactive_energy_export"}
    assert client.requests == [(0x0048, 8)]
