"""When each meter is read: wall-clock aligned periods, and back-off for meters that stay silent.

Each meter has two periods: one for instantaneous values (power, voltage: every few seconds) and
one for counters (energy: e.g. 900 s, so reads land exactly on :00/:15/:30/:45). A meter that does
not answer is retried after 1, 2, 4 … periods, capped, so a dead meter costs the bus one timeout
now and then instead of one every cycle, and the other meters keep their rhythm.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

BACKOFF_CAP_S = 300.0


def next_aligned(now: float, period: float) -> float:
    """The next start strictly after ``now`` on a multiple of ``period`` of the wall clock."""
    return (math.floor(now / period) + 1) * period


@dataclass
class Backoff:
    failures: int = 0  # consecutive cycles in which the meter stayed silent
    until: float = 0.0  # wall-clock time before which the meter is not tried

    def record(self, silent: bool, now: float, period: float) -> None:
        if not silent:
            self.failures, self.until = 0, 0.0
            return
        self.failures += 1
        # 1st failure: try again next period; then 2, 4, 8 … periods, capped.
        delay = min(period * 2 ** (self.failures - 1), max(BACKOFF_CAP_S, period))
        self.until = now + delay - period * 0.5  # land on the aligned slot, not just after it

    def blocks(self, now: float) -> bool:
        return now < self.until


@dataclass
class MeterSchedule:
    meter_id: str
    interval_s: float
    counter_interval_s: float
    next_instant: float = 0.0
    next_counter: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)

    def start(self, now: float) -> None:
        self.next_instant = next_aligned(now, self.interval_s)
        self.next_counter = next_aligned(now, self.counter_interval_s)

    @property
    def next_due(self) -> float:
        return min(self.next_instant, self.next_counter)


@dataclass(frozen=True)
class Due:
    meter_id: str
    instants: bool
    counters: bool


class Schedule:
    """The schedule of one bus. Not thread-safe: the bus's own worker is its only user."""

    def __init__(self, meters: Iterable[MeterSchedule], now: float) -> None:
        self.meters = {m.meter_id: m for m in meters}
        self._last_now = now
        for m in self.meters.values():
            m.start(now)

    def observe(self, now: float) -> None:
        """Follow the wall clock. Stepped back (NTP's first sync on a Pi that booted with a stale
        clock, or a technician), every slot would lie in the future and the bus would stall for
        as long as the step: re-anchor the slots instead. A step forward needs nothing: due slots
        run at once and re-align."""
        if now < self._last_now - 1.0:
            for m in self.meters.values():
                m.start(now)
                m.backoff.until = min(m.backoff.until, now)
        self._last_now = now

    def next_wake(self) -> float:
        return min(m.next_due for m in self.meters.values())

    def due(self, now: float) -> list[Due]:
        """Meters to read now; advances each one's next slot. Healthy meters come first, in
        configuration order, and meters that recently stayed silent last: a dead meter's
        timeout then never shifts the others within their period."""
        self.observe(now)
        found = []
        for m in self.meters.values():
            instants, counters = now >= m.next_instant, now >= m.next_counter
            if not (instants or counters):
                continue
            if instants:
                m.next_instant = next_aligned(now, m.interval_s)
            if counters:
                m.next_counter = next_aligned(now, m.counter_interval_s)
            if not m.backoff.blocks(now):
                found.append(Due(m.meter_id, instants, counters))
        return sorted(found, key=lambda d: self.meters[d.meter_id].backoff.failures > 0)

    def record(self, meter_id: str, *, silent: bool, now: float) -> None:
        m = self.meters[meter_id]
        m.backoff.record(silent, now, min(m.interval_s, m.counter_interval_s))
