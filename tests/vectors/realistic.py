"""Realistic batches for size and speed tests: what a gateway with a full RS-485 line sends.

10 meters of 20-30 measurements each, polled every 10 s; each meter is read in 2-3 Modbus
blocks, and the readings of one block share the timestamp of its answer (30-60 ms apart along
the bus). Values are register × scale, as the agent computes them, so about one in six carries
binary noise (230.13000000000002); counters only grow. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from nengtan.envelope import Cycle, Envelope, Reading
from nengtan.measurements import VOCABULARY, Kind

T0 = 1_763_769_600_000  # 2025-11-22T00:00:00Z
CYCLE_MS = 10_000
# (scale, lowest register, highest register) per unit; voltages are set apart below.
_UNITS = {"A": (0.001, 5_000, 60_000), "W": (0.1, 10_000, 600_000),
          "var": (0.1, 10_000, 600_000), "VA": (0.1, 10_000, 600_000),
          "1": (0.001, 850, 1_000), "Hz": (0.01, 4_990, 5_010)}
# The line is one of electricity meters: the non-electric names stay out, so that the seeded
# plant (and the bytes-per-reading bounds measured on it) does not change as the vocabulary grows.
_NAMES = sorted(n for n, m in VOCABULARY.items() if m.unit in {*_UNITS, "V", "kWh", "kvarh"})


class Plant:
    """The meters of one gateway and their counters; ``cycles`` continues where it stopped."""

    def __init__(self, seed: int = 1, meters: int = 10) -> None:
        self._rnd = random.Random(seed)
        self.plan: list[tuple[str, list[list[str]]]] = []
        for m in range(meters):
            names = sorted(self._rnd.sample(_NAMES, self._rnd.randint(20, 30)), key=_NAMES.index)
            cuts = sorted(self._rnd.sample(range(1, len(names)), self._rnd.randint(1, 2)))
            blocks = [names[a:b] for a, b in zip([0, *cuts], [*cuts, len(names)])]
            self.plan.append((f"meter-{m:02d}", blocks))
        self._counters: dict[tuple[str, str], int] = {}
        self.next_seq = 1

    def _value(self, meter: str, name: str) -> float:
        rnd, measurement = self._rnd, VOCABULARY[name]
        if measurement.kind is Kind.COUNTER:
            register = self._counters.get((meter, name), rnd.randint(100_000, 9_000_000))
            self._counters[(meter, name)] = register = register + rnd.randint(0, 40)
            return register * 0.01  # kWh / kvarh to 0.01
        if measurement.unit == "V":
            low, high = (22_800, 23_300) if name.endswith("_n") else (39_600, 40_200)
            return rnd.randint(low, high) * 0.01
        scale, low, high = _UNITS[measurement.unit]
        return rnd.randint(low, high) * scale

    def cycle(self) -> Cycle:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        ts = T0 + (seq - 1) * CYCLE_MS + self._rnd.randint(0, 3)
        readings = []
        for meter, blocks in self.plan:
            for block in blocks:
                ts += self._rnd.randint(30, 60)
                readings += [Reading(meter, name, ts, self._value(meter, name), "good")
                             for name in block]
        return Cycle(seq, tuple(readings))

    def envelopes(self, count: int, readings: int = 5_000, *,
                  gateway: str = "gw-real-01") -> Iterator[Envelope]:
        """``count`` unsigned envelopes of whole cycles, ``readings`` or just under each,
        chained with ``prev=None`` (the caller seals them and links them)."""
        pending: Cycle | None = None
        for _ in range(count):
            cycles: list[Cycle] = []
            total = 0
            while True:
                cycle = pending or self.cycle()
                pending = None
                if cycles and total + len(cycle.readings) > readings:
                    pending = cycle
                    break
                cycles.append(cycle)
                total += len(cycle.readings)
            yield Envelope(gateway, 1, cycles[0].seq, cycles[-1].seq, None, True, tuple(cycles))


def envelope(readings: int = 5_000, seed: int = 1) -> Envelope:
    """One envelope of exactly ``readings`` readings (the last cycle cut short)."""
    plant = Plant(seed)
    cycles: list[Cycle] = []
    total = 0
    while total < readings:
        cycle = plant.cycle()
        keep = cycle.readings[:readings - total]
        cycles.append(Cycle(cycle.seq, keep))
        total += len(keep)
    return Envelope("gw-real-01", 1, 1, cycles[-1].seq, None, True, tuple(cycles))
