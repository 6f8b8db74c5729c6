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
from dataclasses import dataclass, field
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
REFUSED_REST_S = 600.0
REFUSED_REST_MAX_S = 86400.0


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


@dataclass
class _Cycle:
    """What one read of one meter produced so far."""

    readings: list[Reading] = field(default_factory=list)
    answered: bool = False  # anything came back (a value, an exception, garbage)
    any_ok: bool = False  # at least one request gave registers
    silent: bool = False
    refused_now: bool = False  # the last request was refused with exception 02
    refused: list[Point] = field(default_factory=list)  # lone points refused with exception 02


class _MeterState:
    def __init__(self, meter: MeterConfig) -> None:
        self.meter = meter
        self.points = dict(meter.model.points)
        self.bridge_holes = True
        # measurement -> (retry after, monotonic s; refusals so far): points the meter refuses
        # with exception 02 while it answers its other reads.
        self.suspended: dict[str, tuple[float, int]] = {}
        self.plans: dict[tuple[bool, bool, frozenset[str]], list[Block]] = {}
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
        self._request_timeout = timeout_s

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
        now = time.monotonic()
        resting = frozenset(m for m, (until, _) in state.suspended.items() if until > now)
        key = (instants, counters, resting)
        if key not in state.plans:
            wanted = [p for p in state.points.values() if p.measurement not in resting
                      and ((lookup(p.measurement).kind is Kind.COUNTER and counters)
                           or (lookup(p.measurement).kind is Kind.INSTANT and instants))]
            model = state.meter.model
            state.plans[key] = plan_reads(wanted, max_registers=model.max_registers,
                                          timing=self._timing, turnaround_s=model.turnaround_ms / 1000,
                                          bridge_holes=state.bridge_holes)
        return state.plans[key]

    def plan(self, meter_id: str, *, instants: bool = True, counters: bool = True) -> list[Block]:
        """The requests a read of this meter sends now (for tools and benchmarks)."""
        return list(self._plan(self._state[meter_id], instants, counters))

    def _request(self, unit: int, block: Block, timeout_ms: int | None = None) -> list[int]:
        """One request; raise MeterTimeout, MeterGarbled or MeterProtocolError, never pymodbus's."""
        wait = self._idle_since + self._silence_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # pymodbus enforces no t3.5 between requests; slow meters need it
        read = (self._client.read_holding_registers if block.function == 3
                else self._client.read_input_registers)
        budget = self._timeout_s if timeout_ms is None else timeout_ms / 1000
        self._request_timeout = budget + self._timing.transaction_s(block.count)
        self._set_timeout(self._request_timeout)
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
        cycle = _Cycle()
        for block in self._plan(state, instants, counters):
            if cycle.silent:
                cycle.readings += self._bad(state, block.points)
            elif not self._attempt(state, block, cycle) and cycle.refused_now:
                self._split_refused(state, block, cycle)
        self._settle_refusals(state, cycle)
        if cycle.answered and not cycle.silent:
            state.stats.last_ok = time.time()
        return PollResult(meter_id, tuple(cycle.readings), cycle.silent and not cycle.answered)

    def _attempt(self, state: _MeterState, block: Block, cycle: _Cycle) -> bool:
        """One request for ``block``; its readings (good or bad) go into ``cycle``."""
        started = time.monotonic()
        state.stats.requests += 1
        cycle.refused_now = False
        try:
            registers = self._request(state.meter.unit, block, state.meter.timeout_ms)
        except MeterError as exc:
            cycle.answered |= not isinstance(exc, MeterTimeout)
            cycle.silent = isinstance(exc, MeterTimeout) and not cycle.answered
            self._count_failure(state, exc)
            if isinstance(exc, (MeterTimeout, MeterGarbled)):
                # A late answer may still be on its way: let one as late again pass before the
                # next request, or it collides with (or is taken for) the next meter's answer.
                self._idle_since = time.monotonic() + self._request_timeout
            if isinstance(exc, MeterProtocolError) and exc.code == ILLEGAL_DATA_ADDRESS:
                cycle.refused_now = True
                if len(block.points) == 1:
                    cycle.refused.append(block.points[0])
            else:
                cycle.readings += self._bad(state, block.points)
            return False
        cycle.answered = cycle.any_ok = True
        elapsed_ms = (time.monotonic() - started) * 1000
        state.stats.ok += 1
        state.stats.latency_ms = elapsed_ms
        state.stats.latency_max_ms = max(state.stats.latency_max_ms, elapsed_ms)
        ts = self._clock_ms()
        cycle.readings += [self._decode(state, p, registers, block.start, ts) for p in block.points]
        return True

    def _split_refused(self, state: _MeterState, block: Block, cycle: _Cycle) -> None:
        """Exception 02 on a block: read its runs of adjacent points now, and a refused run point
        by point. If some succeed, the meter refuses holes (stop bridging them for good) or one
        point (rested by ``_settle_refusals``); if all are refused, the refusal is meter-wide and
        teaches nothing."""
        if len(block.points) == 1:
            return
        runs = plan_reads(block.points, max_registers=state.meter.model.max_registers,
                          timing=self._timing, bridge_holes=False)
        if len(runs) == 1:  # no hole in it: find the point the meter refuses, one read each
            runs = [Block(block.function, p.registers[0], p.registers[-1] + 1 - p.registers[0], (p,))
                    for p in block.points]
        any_ok, refused = False, []
        for run in runs:
            if self._attempt(state, run, cycle):
                any_ok = True
            elif cycle.refused_now and len(run.points) > 1:
                refused.append(run)
        for run in refused:
            if any_ok:
                self._split_refused(state, run, cycle)
            else:  # everything refused: meter-wide, so do not spend a request per point on it
                cycle.readings += self._bad(state, run.points)
        if any_ok and state.bridge_holes:
            state.bridge_holes = False
            state.plans.clear()
            log.warning("meter %s refused a read at fc%d %#06x+%d that others answer: reading "
                        "without bridging holes", state.meter.id, block.function, block.start,
                        block.count)

    def _settle_refusals(self, state: _MeterState, cycle: _Cycle) -> None:
        """A lone point refused while the meter answered other reads is rested, then retried
        after 10 min, 20 min … a day (firmware and wiring change). A refusal of everything is a
        meter-wide condition: flagged bad, nothing rested."""
        cycle.readings += self._bad(state, cycle.refused)
        if not cycle.any_ok:
            return
        for point in cycle.refused:
            _, count = state.suspended.get(point.measurement, (0.0, 0))
            rest = min(REFUSED_REST_S * 2 ** count, REFUSED_REST_MAX_S)
            state.suspended[point.measurement] = (time.monotonic() + rest, count + 1)
            where = f"fc{point.function} {point.address:#06x}"
            state.stats.rejected_ranges = sorted({*state.stats.rejected_ranges, where})
            log.warning("meter %s refuses %s (%s); retrying in %.0f s", state.meter.id,
                        point.measurement, where, rest)

    def _bad(self, state: _MeterState, points: Sequence[Point]) -> list[Reading]:
        ts = self._clock_ms()
        return [Reading(state.meter.id, p.measurement, ts, None, "bad") for p in points]

    def _count_failure(self, state: _MeterState, exc: MeterError) -> None:
        stats = state.stats
        stats.last_error = str(exc)
        if isinstance(exc, MeterTimeout):
            stats.silent += 1
        elif isinstance(exc, MeterGarbled):
            stats.garbled += 1
        else:
            stats.exceptions += 1

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
