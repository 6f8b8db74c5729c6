"""Modbus RTU over an RS-485 port, through pymodbus's synchronous serial client.

pymodbus stays the protocol layer; the retry policy is ours. Its defaults (3 s timeout, 3 retries)
would let one silent meter cost 12 s of bus time, so the client gets the configured timeout and no
retries, and a failed block becomes readings of quality "bad" instead of a stalled cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusException

from agent.config import BusConfig, MeterConfig
from agent.meters import Block, LineTiming, decode_registers, plan_reads
from nengtan.envelope import Reading
from nengtan.errors import MeterError, MeterProtocolError, MeterTimeout
from nengtan.measurements import Kind, lookup


@dataclass
class MeterStats:
    requests: int = 0
    errors: int = 0
    last_error: str = ""
    latency_ms: float = 0.0


@dataclass
class _MeterState:
    plan: list[Block]
    counters: dict[str, float] = field(default_factory=dict)
    stats: MeterStats = field(default_factory=MeterStats)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RtuBus:
    """One owner of one serial port: polls its meters one request at a time."""

    def __init__(self, config: BusConfig, *, clock_ms: Callable[[], int] = _now_ms) -> None:
        self.config = config
        self._clock_ms = clock_ms
        timing = LineTiming(config.baudrate, config.parity, config.stopbits)
        self._state = {
            m.id: _MeterState(plan_reads(m.model.points.values(), max_registers=m.model.max_registers,
                                         timing=timing, turnaround_s=m.model.turnaround_ms / 1000))
            for m in config.meters
        }
        self._client = ModbusSerialClient(
            config.port, framer=FramerType.RTU, baudrate=config.baudrate, bytesize=8,
            parity=config.parity, stopbits=config.stopbits, timeout=config.timeout_ms / 1000,
            retries=0, reconnect_delay=0,
        )

    def stats(self, meter_id: str) -> MeterStats:
        return self._state[meter_id].stats

    def open(self) -> bool:
        """Open the port; False if it cannot be opened now (the loop retries next cycle)."""
        return bool(self._client.connected or self._client.connect())

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def read_block(self, unit: int, block: Block) -> list[int]:
        """One request; raise MeterTimeout or MeterProtocolError, never a pymodbus error."""
        read = (self._client.read_holding_registers if block.function == 3
                else self._client.read_input_registers)
        try:
            response = read(block.start, count=block.count, device_id=unit)
        except ModbusException as exc:
            raise MeterTimeout(f"unit {unit} did not answer a read at {block.start:#06x}: {exc}",
                               unit_id=unit, address=block.start) from exc
        if response.isError():
            code = getattr(response, "exception_code", None)
            raise MeterProtocolError(f"unit {unit} answered exception {code} at {block.start:#06x}",
                                     unit_id=unit, address=block.start, code=code)
        registers = list(response.registers)
        if len(registers) != block.count:
            raise MeterProtocolError(f"unit {unit} sent {len(registers)} registers, asked {block.count}",
                                     unit_id=unit, address=block.start)
        return registers

    def read_meter(self, meter: MeterConfig) -> list[Reading]:
        """Read every point of ``meter``; points of a failed block come back with quality 'bad'."""
        state = self._state[meter.id]
        readings: list[Reading] = []
        for block in state.plan:
            started = time.monotonic()
            state.stats.requests += 1
            try:
                registers = self.read_block(meter.unit, block)
            except MeterError as exc:
                state.stats.errors += 1
                state.stats.last_error = str(exc)
                ts = self._clock_ms()
                readings += [Reading(meter.id, p.measurement, ts, None, "bad") for p in block.points]
                continue
            state.stats.latency_ms = (time.monotonic() - started) * 1000
            ts = self._clock_ms()
            for p in block.points:
                offset = p.address - block.start
                value = decode_registers(registers[offset:offset + p.count], p.value_type,
                                         p.word_order) * p.scale
                readings.append(self._qualify(state, meter.id, p.measurement, ts, value))
        return readings

    @staticmethod
    def _qualify(state: _MeterState, meter_id: str, measurement: str, ts: int, value: float) -> Reading:
        if value != value or value in (float("inf"), float("-inf")):
            return Reading(meter_id, measurement, ts, None, "bad")
        if lookup(measurement).kind is Kind.COUNTER:
            previous = state.counters.get(measurement)
            if previous is not None and value < previous:
                # A counter that runs backwards is a replaced meter or a fault: flag, keep the value.
                return Reading(meter_id, measurement, ts, value, "suspect")
            state.counters[measurement] = value
        return Reading(meter_id, measurement, ts, value, "good")
