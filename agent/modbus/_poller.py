"""Read meters through a pymodbus client, one request at a time, with our own failure policy.

pymodbus stays the protocol layer. We give it the timeout and no retries, and tell failures
apart ourselves: silence (nothing came back: the meter may be dead, so it backs off), garbage
(bytes came back but no valid frame: noise, CRC error, a collision; retried next cycle), and
exception replies (the meter is alive but refuses the read; exception 02 makes us stop bridging
holes for that meter, then drop a point it never serves).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pymodbus.exceptions import ModbusException

from agent.config import MeterConfig
from agent.meters import Block, LineTiming, Point, decode_point, plan_reads, ratio_factor
from agent.modbus._stats import MeterStats
from nengtan.envelope import Reading
from nengtan.errors import MeterError, MeterProtocolError, MeterTimeout
from nengtan.measurements import Kind, lookup

log = logging.getLogger(__name__)
ILLEGAL_DATA_ADDRESS = 2


class MeterGarbled(MeterProtocolError):
    """Bytes came back but no valid answer: a CRC error, noise, a truncated or foreign frame."""


class Client(Protocol):
    @property
    def connected(self) -> bool: ...

    def connect(self) -> bool: ...
    def close(self) -> None: ...
    def read_holding_registers(self, address: int, *, count: int = ..., device_id: int = ...) -> Any: ...
    def read_input_registers(self, address: int, *, count: int = ..., device_id: int = ...) -> Any: ...


@dataclass(frozen=True)
class PollResult:
    meter_id: str
    readings: tuple[Reading, ...]
    silent: bool  # the meter never answered this time: it should back off


class _MeterState:
    def __init__(self, meter: MeterConfig) -> None:
        self.meter = meter
        self.points = dict(meter.model.points)
        self.bridge_holes = True
        self.plans: dict[tuple[bool, bool], list[Block]] = {}
        self.counters: dict[str, float] = {}
        self.stats = MeterStats()


class ModbusPoller:
    """The one owner of one line (a serial port, or a TCP connection to a PLC or serial server)."""

    def __init__(self, client: Client, meters: Sequence[MeterConfig], *, timing: LineTiming | None,
                 timeout_s: float = 0.25,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._timing = timing or LineTiming(115200)
        self._silence_s = timing.silence_s if timing else 0.0  # TCP needs no inter-frame gap
        self._clock_ms = clock_ms
        self._state = {m.id: _MeterState(m) for m in meters}
        self._received = 0
        self._idle_since = 0.0

    def note_traffic(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's trace_packet hook: count what came back, to tell silence from garbage."""
        if not sending:
            self._received += len(data)
        return data

    def stats(self) -> dict[str, MeterStats]:
        return {meter_id: s.stats for meter_id, s in self._state.items()}

    def open(self) -> bool:
        return bool(self._client.connected or self._client.connect())

    def close(self) -> None:
        self._client.close()

    def _plan(self, state: _MeterState, instants: bool, counters: bool) -> list[Block]:
        key = (instants, counters)
        if key not in state.plans:
            wanted = [p for p in state.points.values()
                      if (lookup(p.measurement).kind is Kind.COUNTER and counters)
                      or (lookup(p.measurement).kind is Kind.INSTANT and instants)]
            model = state.meter.model
            state.plans[key] = plan_reads(wanted, max_registers=model.max_registers,
                                          timing=self._timing, turnaround_s=model.turnaround_ms / 1000,
                                          bridge_holes=state.bridge_holes)
        return state.plans[key]

    def plan(self, meter_id: str, *, instants: bool = True, counters: bool = True) -> list[Block]:
        """The requests a read of this meter sends now (for tools and benchmarks)."""
        return list(self._plan(self._state[meter_id], instants, counters))

    def _request(self, unit: int, block: Block) -> list[int]:
        """One request; raise MeterTimeout, MeterGarbled or MeterProtocolError, never pymodbus's."""
        wait = self._idle_since + self._silence_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # pymodbus enforces no t3.5 between requests; slow meters need it
        read = (self._client.read_holding_registers if block.function == 3
                else self._client.read_input_registers)
        self._set_timeout(self._timeout_s + self._timing.transaction_s(block.count))
        self._received = 0
        try:
            response = read(block.start, count=block.count, device_id=unit)
        except ModbusException as exc:
            kind = MeterGarbled if self._received else MeterTimeout
            raise kind(f"unit {unit}: {'no valid answer' if self._received else 'no answer'} "
                       f"to a read of {block.count} at {block.start:#06x}",
                       unit_id=unit, address=block.start) from exc
        except (ValueError, IndexError, KeyError, TypeError, struct.error) as exc:
            # pymodbus has raised such errors on malformed frames before (pymodbus #2698); a
            # meter's garbage must never take the bus worker down.
            raise MeterGarbled(f"unit {unit}: malformed answer at {block.start:#06x}: {exc!r}",
                               unit_id=unit, address=block.start) from exc
        finally:
            self._idle_since = time.monotonic()
        if response.isError():
            code = getattr(response, "exception_code", None)
            raise MeterProtocolError(f"unit {unit} answered exception {code} at {block.start:#06x}",
                                     unit_id=unit, address=block.start, code=code)
        registers = list(response.registers)
        if len(registers) != block.count:
            raise MeterGarbled(f"unit {unit} sent {len(registers)} registers, asked {block.count}",
                               unit_id=unit, address=block.start)
        return registers

    def _set_timeout(self, seconds: float) -> None:
        """The configured timeout is the meter's budget to *start* answering; pymodbus times the
        whole exchange, and a 125-register answer alone takes 265 ms at 9600 Bd. So each request
        gets the budget plus its own wire time. pymodbus keeps the per-request deadline in
        comm_params.timeout_connect (3.16; the hw tests fail loudly if that ever changes)."""
        params = getattr(self._client, "comm_params", None)
        if params is not None:
            params.timeout_connect = seconds

    def read(self, meter_id: str, *, instants: bool = True, counters: bool = True) -> PollResult:
        """Read the due points of one meter. Points of a failed block come back with quality
        'bad' and no value; after the first silence the meter's other blocks are not tried."""
        state = self._state[meter_id]
        unit = state.meter.unit
        readings: list[Reading] = []
        answered, silent = False, False
        for block in self._plan(state, instants, counters):
            if silent:
                readings += self._bad(state, block.points)
                continue
            started = time.monotonic()
            state.stats.requests += 1
            try:
                registers = self._request(unit, block)
            except MeterError as exc:
                answered |= not isinstance(exc, MeterTimeout)
                silent = isinstance(exc, MeterTimeout) and not answered
                self._count_failure(state, exc, block)
                readings += self._bad(state, block.points)
                continue
            answered = True
            elapsed_ms = (time.monotonic() - started) * 1000
            state.stats.ok += 1
            state.stats.latency_ms = elapsed_ms
            state.stats.latency_max_ms = max(state.stats.latency_max_ms, elapsed_ms)
            ts = self._clock_ms()
            readings += [self._decode(state, p, registers, block.start, ts) for p in block.points]
        if answered and not silent:
            state.stats.last_ok = time.time()
        return PollResult(meter_id, tuple(readings), silent and not answered)

    def _bad(self, state: _MeterState, points: Sequence[Point]) -> list[Reading]:
        ts = self._clock_ms()
        return [Reading(state.meter.id, p.measurement, ts, None, "bad") for p in points]

    def _count_failure(self, state: _MeterState, exc: MeterError, block: Block) -> None:
        stats = state.stats
        stats.last_error = str(exc)
        if isinstance(exc, MeterTimeout):
            stats.silent += 1
        elif isinstance(exc, MeterGarbled):
            stats.garbled += 1
        else:
            stats.exceptions += 1
            if isinstance(exc, MeterProtocolError) and exc.code == ILLEGAL_DATA_ADDRESS:
                self._reject_range(state, block)

    def _reject_range(self, state: _MeterState, block: Block) -> None:
        """Exception 02: first stop reading through holes; a lone point still refused is dropped."""
        state.plans.clear()
        where = f"fc{block.function} {block.start:#06x}+{block.count}"
        if state.bridge_holes:
            state.bridge_holes = False
            log.warning("meter %s refused %s: reading without bridging holes", state.meter.id, where)
        elif len(block.points) == 1:
            del state.points[block.points[0].measurement]
            state.stats.rejected_ranges.append(where)
            log.warning("meter %s never serves %s (%s): no longer read", state.meter.id, where,
                        block.points[0].measurement)

    def _decode(self, state: _MeterState, point: Point, registers: list[int], start: int,
                ts: int) -> Reading:
        def read(function: int, address: int) -> int:
            if not start <= address < start + len(registers):
                raise KeyError(address)  # never let a negative index wrap around
            return registers[address - start]

        meter = state.meter
        try:
            value = decode_point(point, read) * ratio_factor(point, meter.ct_ratio, meter.pt_ratio)
        except ValueError:  # not available, not finite, or a register this request lacks
            return Reading(meter.id, point.measurement, ts, None, "bad")
        if lookup(point.measurement).kind is Kind.COUNTER:
            previous = state.counters.get(point.measurement)
            if previous is not None and value < previous:
                # A counter that runs backwards is a replaced meter or a fault: flag, keep the value.
                return Reading(meter.id, point.measurement, ts, value, "suspect")
            state.counters[point.measurement] = value
        return Reading(meter.id, point.measurement, ts, value, "good")
