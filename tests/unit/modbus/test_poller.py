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


def test_exception_02_stops_hole_bridging_then_drops_a_point_the_meter_never_serves(
        setup: tuple[ModbusPoller, ScriptedClient]) -> None:
    poller, client = setup
    client.mode = "exception2"
    poller.read("m")
    assert client.requests == [(0, 80)]
    client.requests.clear()
    poller.read("m")  # replanned without bridging: one request per run of adjacent points
    assert len(client.requests) > 1 and all(count <= 80 for _, count in client.requests)
    client.mode = "ok"
    assert {r.quality for r in poller.read("m").readings} == {"good"}


def test_counters_only_cycles_read_only_the_counter_registers(
        setup: tuple[ModbusPoller, ScriptedClient]) -> None:
    poller, client = setup
    result = poller.read("m", instants=False, counters=True)
    assert {r.measurement for r in result.readings} == {
        "active_energy_import", "active_energy_export", "reactive_energy_import", "reactive_energy_export"}
    assert client.requests == [(0x0048, 8)]
