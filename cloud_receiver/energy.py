"""Turn cumulative energy counters into consumed kWh per meter per local day.

Each pair of consecutive good readings of one meter's ``active_energy_import`` counter is an
interval; its kWh belong to the local day of the interval's *end* reading (the moment we know the
energy was used). A counter that goes backwards (meter replaced, reset, or a misread) contributes
0 and is reported as an anomaly: a negative consumption would silently cancel real use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, UTC
from itertools import groupby
from zoneinfo import ZoneInfo

from cloud_receiver.store import CounterSample


@dataclass(frozen=True)
class DailyEnergy:
    gateway: str
    meter: str
    day: date  # local calendar day in the report's time zone
    kwh: float
    intervals: int


@dataclass(frozen=True)
class CounterAnomaly:
    gateway: str
    meter: str
    ts_ms: int  # the end reading of the interval that went backwards
    day: date
    previous: float
    current: float

    @property
    def delta(self) -> float:
        return self.current - self.previous


@dataclass(frozen=True)
class EnergyResult:
    days: tuple[DailyEnergy, ...]
    anomalies: tuple[CounterAnomaly, ...]


def local_day(ts_ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(tz).date()


def daily_energy(samples: Iterable[CounterSample], tz: ZoneInfo) -> EnergyResult:
    """Interval kWh summed per (gateway, meter, local day of the interval's end reading)."""
    # Counters are differenced in the gateway's sequence order, never by timestamp: a Pi without
    # an RTC can boot in 1970 or have its clock stepped by hours (reliability.md §1.4).
    ordered = sorted(samples, key=lambda s: (s.gateway, s.meter, s.epoch, s.seq))
    days: list[DailyEnergy] = []
    anomalies: list[CounterAnomaly] = []
    for (gateway, meter), series in groupby(ordered, key=lambda s: (s.gateway, s.meter)):
        per_day: dict[date, list[float]] = {}
        points = list(series)
        for previous, current in zip(points, points[1:]):
            day = local_day(current.ts_ms, tz)
            delta = current.value - previous.value
            if delta < 0:
                anomalies.append(CounterAnomaly(gateway, meter, current.ts_ms, day,
                                                previous.value, current.value))
                delta = 0.0
            per_day.setdefault(day, []).append(delta)
        days += [DailyEnergy(gateway, meter, day, math.fsum(deltas), len(deltas))
                 for day, deltas in sorted(per_day.items())]
    return EnergyResult(tuple(days), tuple(anomalies))
