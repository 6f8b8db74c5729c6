"""Emulated meters whose readings evolve like a small three-phase plant.

Every value is computed at read time from emulated time, so the counters integrate power exactly
(analytically) however irregularly the agent polls. The meter remembers every counter value it
has put on the wire, rounded the way the agent decodes it (every energy value; first, last and
count of the others), so tests can check delivered kWh, tonnes or m³ exactly. Steam, gas and
water meters get their values from ``media`` instead of the electrical profile.
"""

from __future__ import annotations

import cmath
import math
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.meters import MeterModel, Point, decode_registers, encode_value
from hw_tests.emulator.media import medium_for
from nengtan.measurements import VOCABULARY, Kind

Clock = Callable[[], float]
ENERGY = "active_energy_import"
_DAY_S = 86_400.0
_OMEGA = 2 * math.pi / _DAY_S
_WS_PER_KWH = 3_600_000.0
_NOMINAL_V = 230.0
_HISTORY = 1_000_000  # served energy values kept; first/last/count are kept regardless
COUNTERS = frozenset(m.name for m in VOCABULARY.values() if m.kind is Kind.COUNTER)
_INT_RANGES = {t: (-(1 << (b - 1)), (1 << (b - 1)) - 1) for t, b in
               (("int16", 16), ("int32", 32), ("int64", 64))}
_INT_RANGES |= {t: (0, (1 << b) - 1) for t, b in (("uint16", 16), ("uint32", 32), ("uint64", 64))}


def scaled_clock(speedup: float = 1.0, *, base: Clock = time.monotonic) -> Clock:
    """Emulated seconds since this call, running ``speedup`` times faster than ``base``."""
    if speedup <= 0:
        raise ValueError("speedup must be positive")
    origin = base()
    return lambda: (base() - origin) * speedup


class UnreadableRegisters(Exception):
    """A read touches registers this meter rejects (answered with exception 02)."""


@dataclass(frozen=True)
class CounterTruth:
    """What the meter served of one counter, in its unit as the agent decodes it."""

    first: float | None
    last: float | None
    count: int

    @property
    def delta(self) -> float:
        return 0.0 if self.first is None or self.last is None else self.last - self.first


EnergyTruth = CounterTruth  # the name from when only active_energy_import was tracked
_NOTHING_SERVED = CounterTruth(None, None, 0)


def _spans(points: list[Point], max_gap: int) -> list[tuple[int, int]]:
    """Address ranges a tolerant meter answers: defined points, holes up to ``max_gap`` bridged.

    A hole wider than the model's request limit cannot be inside any read the planner makes, so
    treating such gaps as unmapped keeps reads of nonsense addresses rejected, as on real meters.
    """
    spans: list[tuple[int, int]] = []
    for p in sorted(points, key=lambda p: p.address):
        if spans and p.address - spans[-1][1] <= max_gap:
            spans[-1] = (spans[-1][0], max(spans[-1][1], p.end))
        else:
            spans.append((p.address, p.end))
    return spans


def _encode(point: Point, value: float) -> list[int]:
    raw = value / point.scale
    if point.value_type in _INT_RANGES:
        low, high = _INT_RANGES[point.value_type]
        raw = min(max(round(raw), low), high) if math.isfinite(raw) else 0
    elif point.value_type == "float32" and math.isfinite(raw):
        raw = max(-3.4e38, min(3.4e38, raw))  # struct refuses float32 overflow
    return encode_value(raw, point.value_type, point.word_order)


class EmulatedMeter:
    """One meter on the bus, answering from ``model``'s register map.

    Args:
        model: the register map, as the agent loads it.
        unit: Modbus unit id (1..247).
        base_kw: mean total active power.
        seed: makes the profile, the noise and the starting counters reproducible.
        clock: emulated seconds; ``scaled_clock(speedup)`` compresses time for tests.
        strict_holes: answer exception 02 for any register that is not part of a point, or a read
            that cuts a multi-register value, as some meters do; else holes inside a readable span
            read as 0.
        turnaround_ms: gap between the end of a request and the first response byte.
    """

    def __init__(self, model: MeterModel, unit: int, *, base_kw: float = 5.0, seed: int = 0,
                 clock: Clock = time.monotonic, strict_holes: bool = False,
                 turnaround_ms: float | None = None) -> None:
        if not 1 <= unit <= 247:
            raise ValueError(f"unit {unit} is outside 1..247")
        self.model = model
        self.unit = unit
        self.base_kw = base_kw
        self.strict_holes = strict_holes
        self.turnaround_ms = model.turnaround_ms if turnaround_ms is None else turnaround_ms
        self._clock = clock
        self._rng = random.Random(f"noise {seed}")
        rng = random.Random(seed)  # separate, so the profile does not depend on noise drawn
        self._a1, self._a2 = rng.uniform(0.25, 0.45), rng.uniform(0.05, 0.2)
        self._phi1, self._phi2 = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
        raw_shares = [rng.uniform(0.8, 1.2) for _ in range(3)]
        self._shares = [s / sum(raw_shares) for s in raw_shares]
        self._pf = [rng.uniform(0.90, 0.98) for _ in range(3)]
        self._volt_offset = [rng.uniform(-3.0, 3.0) for _ in range(3)]
        self._import0 = [rng.uniform(300.0, 6000.0) for _ in range(3)]
        self._export0 = [rng.uniform(0.0, 50.0) for _ in range(3)]
        self._reactive0 = (rng.uniform(100.0, 3000.0), rng.uniform(0.0, 20.0))
        self._last_t = -math.inf
        # Lists, not keyed by address: a model may map two measurements to one register.
        self._by_function = {fc: [p for p in model.points.values() if p.function == fc]
                             for fc in {p.function for p in model.points.values()}}
        self._spans = {fc: _spans(pts, model.max_registers)
                       for fc, pts in self._by_function.items()}
        self._truth_lock = threading.Lock()
        self._truth: dict[str, CounterTruth] = {}
        self.served: deque[float] = deque(maxlen=_HISTORY)  # active_energy_import only
        self._medium = medium_for(model, seed)

    def now(self) -> float:
        """Emulated seconds, never going backwards even if an injected clock does."""
        self._last_t = max(self._last_t, self._clock())
        return self._last_t

    def _power_w(self, t: float) -> float:
        """Smooth daily-ish total active power: a mean with a daily and a half-daily swing."""
        return 1000 * self.base_kw * (1 + self._a1 * math.sin(_OMEGA * t + self._phi1)
                                      + self._a2 * math.sin(2 * _OMEGA * t + self._phi2))

    def _energy_ws(self, t: float) -> float:
        """Exact integral of ``_power_w`` from 0 to t, so counters match any polling pattern."""
        return 1000 * self.base_kw * (
            t + self._a1 / _OMEGA * (math.cos(self._phi1) - math.cos(_OMEGA * t + self._phi1))
            + self._a2 / (2 * _OMEGA)
            * (math.cos(self._phi2) - math.cos(2 * _OMEGA * t + self._phi2)))

    def values(self, t: float | None = None) -> dict[str, float]:
        """One consistent sample of every vocabulary measurement at emulated time ``t``."""
        t = self.now() if t is None else t
        if self._medium is not None:
            return self._medium.values(t, self._rng.gauss)
        noise = self._rng.gauss
        p_total = self._power_w(t) * (1 + noise(0, 0.01))
        drift = 1.5 * math.sin(_OMEGA * 3 * t)
        v = {}
        volts = [_NOMINAL_V + off + drift + noise(0, 0.3) for off in self._volt_offset]
        amps, phasors = [], []
        for i in range(3):
            pf = min(1.0, self._pf[i] + noise(0, 0.002))
            p = p_total * self._shares[i]
            amps.append(p / (volts[i] * pf))
            phasors.append(cmath.rect(amps[i], -2 * math.pi * i / 3 - math.acos(pf)))
            ph = f"l{i + 1}"
            v[f"voltage_{ph}_n"], v[f"current_{ph}"] = volts[i], amps[i]
            v[f"active_power_{ph}"], v[f"power_factor_{ph}"] = p, pf
            v[f"apparent_power_{ph}"] = p / pf
            v[f"reactive_power_{ph}"] = p * math.tan(math.acos(pf))
        for a, b in ((1, 2), (2, 3), (3, 1)):
            ua, ub = volts[a - 1], volts[b - 1]  # 120° apart: |Ua - Ub| = sqrt(Ua² + Ub² + Ua·Ub)
            v[f"voltage_l{a}_l{b}"] = math.sqrt(ua * ua + ub * ub + ua * ub)
        v["current_n"] = abs(sum(phasors))
        for stem in ("active_power", "reactive_power", "apparent_power"):
            v[f"{stem}_total"] = sum(v[f"{stem}_l{i}"] for i in (1, 2, 3))
        v["power_factor_total"] = v["active_power_total"] / v["apparent_power_total"]
        v["frequency"] = 50.0 + 0.02 * math.sin(_OMEGA * 40 * t) + noise(0, 0.003)
        v.update(self._counters(t))
        return v

    def _counters(self, t: float) -> dict[str, float]:
        kwh = self._energy_ws(t) / _WS_PER_KWH
        c = {}
        for i in range(3):
            c[f"active_energy_import_l{i + 1}"] = self._import0[i] + self._shares[i] * kwh
            c[f"active_energy_export_l{i + 1}"] = self._export0[i]
        for d in ("import", "export"):
            c[f"active_energy_{d}"] = sum(c[f"active_energy_{d}_l{i}"] for i in (1, 2, 3))
        c["active_energy_total"] = c["active_energy_import"] + c["active_energy_export"]
        tan_phi = sum(s * math.tan(math.acos(pf)) for s, pf in zip(self._shares, self._pf))
        c["reactive_energy_import"] = self._reactive0[0] + tan_phi * kwh
        c["reactive_energy_export"] = self._reactive0[1]
        c["reactive_energy_total"] = c["reactive_energy_import"] + c["reactive_energy_export"]
        return c

    def check_read(self, function: int, address: int, count: int) -> None:
        """Raise UnreadableRegisters if this meter would reject the read."""
        end = address + count
        if not any(lo <= address and end <= hi for lo, hi in self._spans.get(function, [])):
            raise UnreadableRegisters(f"{address:#06x}+{count} is outside the register map")
        if self.strict_holes:
            covered: set[int] = set()
            for p in self._by_function[function]:
                if p.address < end and address < p.end:
                    if p.address < address or p.end > end:
                        raise UnreadableRegisters(f"read cuts {p.measurement} at {p.address:#06x}")
                    covered.update(range(p.address, p.end))
            if len(covered) != count:
                raise UnreadableRegisters(f"{address:#06x}+{count} covers undefined registers")

    def read_registers(self, function: int, address: int,
                       count: int) -> tuple[list[int], float | None]:
        """Registers for one read and, if it carries the whole energy counter, its decoded value.

        Raises UnreadableRegisters as ``check_read`` does.
        """
        registers, counters = self.read(function, address, count)
        return registers, counters.get(ENERGY)

    def read(self, function: int, address: int, count: int) -> tuple[list[int], dict[str, float]]:
        """Registers for one read and the decoded value of every counter it carries whole.

        Raises UnreadableRegisters as ``check_read`` does. The counters are not recorded as
        served here: only the bus knows whether the answer reached the wire intact.
        """
        self.check_read(function, address, count)
        values = self.values()
        registers = [0] * count
        served: dict[str, float] = {}
        for p in self._by_function[function]:
            if p.end <= address or p.address >= address + count:
                continue
            words = _encode(p, values.get(p.measurement, 0.0))
            for k, word in enumerate(words):
                if address <= p.address + k < address + count:
                    registers[p.address + k - address] = word
        for p in self._by_function[function]:
            if p.measurement in COUNTERS and address <= p.address and p.end <= address + count:
                # Decoded from the response itself, as the agent will decode it.
                words = registers[p.address - address:p.end - address]
                served[p.measurement] = decode_registers(words, p.value_type,
                                                         p.word_order) * p.scale
        return registers, served

    def record_served(self, kwh: float) -> None:
        self.record_counters({ENERGY: kwh})

    def record_counters(self, served: Mapping[str, float]) -> None:
        """Remember counter values that reached the master intact."""
        with self._truth_lock:
            for name, value in served.items():
                old = self._truth.get(name, _NOTHING_SERVED)
                first = value if old.first is None else old.first
                self._truth[name] = CounterTruth(first, value, old.count + 1)
            if ENERGY in served:
                self.served.append(served[ENERGY])

    def truth(self, measurement: str = ENERGY) -> CounterTruth:
        """What the meter served of ``measurement`` (a counter it maps) so far."""
        with self._truth_lock:
            return self._truth.get(measurement, _NOTHING_SERVED)

    def counter_truths(self) -> dict[str, CounterTruth]:
        """Every counter the meter has served at least once."""
        with self._truth_lock:
            return dict(self._truth)


def float32(value: float) -> float:
    """``value`` rounded to float32, as a meter that stores floats would hold it."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])
