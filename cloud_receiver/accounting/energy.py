"""Interval energy per metering point, from the store's rollups, with the counter's life events.

The rollups (``cloud_receiver.rollups``) are built at ingest without knowing the plant: a counter
that goes backwards is booked as 0 plus an anomaly, whatever the reason. Here the plant model
explains those jumps, and each explanation is a correction of one bucket, shown as an event:

* a **replacement** (``replacements.toml``): the interval from the old meter's last stored reading
  ``a`` to the new meter's first ``b`` is taken back, and ``old_final - a`` (booked at the
  replacement time) plus ``b - new_initial`` (booked with ``b``) are added: exactly what both
  meters counted, nothing invented for the minutes the meter was out;
* a **rollover**: a register with ``rollover_at = M`` that goes from ``a`` to ``b < a`` counted
  ``M - a + b`` (accepted only when that is under half the modulus; else it is a reset);
* anything else backwards stays 0 and is reported as a **negative delta**.

Gaps are never filled: a bucket with no interval, or whose interval began before it (a long
interval: its amount is booked where it ends, not spread), is a gap; consecutive gap buckets are
reported as one range. Completeness is the share of due buckets that are neither.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cloud_receiver.accounting.model import MeterPoint, Plant, Replacement
from cloud_receiver.rollups import bucket_start
from cloud_receiver.store import ROLLUP_PERIODS, CounterPoint, Store


@dataclass(frozen=True)
class GapRange:
    """Buckets ``[start_ms, end_ms)`` of one point without complete data."""

    point: str
    start_ms: int
    end_ms: int
    buckets: int
    empty: int  # buckets with no interval at all
    long: int  # buckets holding an interval that began before them

    @property
    def hours(self) -> float:
        return (self.end_ms - self.start_ms) / 3_600_000


@dataclass(frozen=True)
class CounterEvent:
    """A correction or flag on one interval: ``replacement``, ``replacement_mismatch``,
    ``rollover`` or ``negative``. ``amount`` is what it adds to the point's total (energy-type
    units; 0 for a flag)."""

    point: str
    kind: str
    ts_ms: int
    previous: float  # counter units
    current: float
    amount: float
    detail: str
    #: What this event adds to the plain counter difference (last − first reading, counter
    #: units) of the period, so a reader can reconcile: total = (Σ differences + Σ adjustments)
    #: × scale. Negative: previous − current; rollover: the modulus; replacement: see _bridge.
    adjustment: float = 0.0


@dataclass
class PointEnergy:
    point: MeterPoint
    amounts: dict[int, float] = field(default_factory=dict)  # bucket start -> energy units
    expected: int = 0  # buckets due in the range
    covered: int = 0  # due buckets with complete data
    gaps: list[GapRange] = field(default_factory=list)
    events: list[CounterEvent] = field(default_factory=list)

    @property
    def total(self) -> float:
        return math.fsum(self.amounts.values())

    @property
    def completeness(self) -> float:
        """Percent of due buckets with complete data (100 when none is due yet)."""
        return 100.0 if self.expected == 0 else 100.0 * self.covered / self.expected

    @property
    def negatives(self) -> int:
        return sum(1 for e in self.events if e.kind == "negative")


@dataclass(frozen=True)
class IntervalEnergy:
    start_ms: int
    end_ms: int
    period: str
    timezone: str
    points: dict[str, PointEnergy]


def bucket_starts(start_ms: int, end_ms: int, period: str, tz: ZoneInfo) -> list[int]:
    """Every ``period`` bucket start in ``[start_ms, end_ms)``; ``start_ms`` must be a start."""
    out: list[int] = []
    if period == "1d":
        day = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(tz).date()
        while True:
            ms = int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)
            if ms >= end_ms:
                return out
            out.append(ms)
            day += timedelta(days=1)
    step = ROLLUP_PERIODS[period]
    return list(range(start_ms, end_ms, step))


class _Acc:
    """Per-bucket sums of one point while corrections are applied."""

    def __init__(self, starts: list[int], period: str, tz: ZoneInfo) -> None:
        self.valid = set(starts)
        self.period, self.tz = period, tz
        self.amount: dict[int, float] = defaultdict(float)
        self.intervals: dict[int, int] = defaultdict(int)
        self.long: dict[int, int] = defaultdict(int)

    def bucket(self, ts_ms: int) -> int | None:
        b = bucket_start(self.period, ts_ms - 1, self.tz)
        return b if b in self.valid else None

    def add(self, end_ts: int, amount: float, *, bridge: bool = False) -> bool:
        b = self.bucket(end_ts)
        if b is None:
            return False
        self.amount[b] += amount
        # A replacement bridge is measured data: its bucket is covered even when no stored
        # interval ends in it (a new meter id starts a new series).
        self.intervals[b] += int(bridge)
        return True


def _series(point: MeterPoint, replacements: list[Replacement]) -> list[str]:
    meters = [point.meter]
    for r in replacements:
        if r.new_meter and r.new_meter not in meters:
            meters.append(r.new_meter)
    return meters


def _replacement_for(a: CounterPoint, b: CounterPoint,
                     replacements: list[Replacement]) -> Replacement | None:
    for r in replacements:
        if a.ts_ms < r.at_ms <= b.ts_ms and r.new_meter in (None, a.meter):
            return r
    return None


def _bridge(acc: _Acc, point: MeterPoint, r: Replacement, a: CounterPoint | None,
            b: CounterPoint | None) -> list[CounterEvent]:
    """Book what the old meter counted after ``a`` and the new one before ``b``."""
    events: list[CounterEvent] = []
    if a is not None:
        old = r.old_final - a.value
        if old < 0:
            events.append(CounterEvent(point.id, "replacement_mismatch", r.at_ms, a.value,
                                       r.old_final, 0.0, "old_final is below the last stored "
                                       "reading of the old meter; counted as 0"))
        elif acc.add(r.at_ms, old, bridge=True):
            events.append(CounterEvent(point.id, "replacement", r.at_ms, a.value, r.old_final,
                                       old * point.scale, "old meter: last stored reading → "
                                       "old_final", old))
    if b is not None:
        new = b.value - r.new_initial
        if new < 0:
            events.append(CounterEvent(point.id, "replacement_mismatch", b.ts_ms, r.new_initial,
                                       b.value, 0.0, "first stored reading of the new meter is "
                                       "below new_initial; counted as 0"))
        elif acc.add(b.ts_ms, new, bridge=True):
            events.append(CounterEvent(point.id, "replacement", b.ts_ms, r.new_initial, b.value,
                                       new * point.scale, "new meter: new_initial → first "
                                       "stored reading", new))
    return events


def _corrections(store: Store, acc: _Acc, point: MeterPoint,
                 replacements: list[Replacement]) -> list[CounterEvent]:
    events: list[CounterEvent] = []
    series = {m: store.counter_points(point.gateway, m, point.measurement)
              for m in _series(point, replacements)}
    for pts in series.values():
        for a, b in zip(pts, pts[1:]):
            r = _replacement_for(a, b, replacements)
            if r is not None:
                # Take back what the ingest booked for a → b (0 if it went backwards). Against
                # the plain difference b − a, the bridge adds old_final − new_initial.
                acc.add(b.ts_ms, -max(0.0, b.value - a.value))
                bridged = _bridge(acc, point, r, a, b)
                events += [replace(e, adjustment=0.0) for e in bridged]
                jump = sum(e.amount for e in bridged) / point.scale - (b.value - a.value)
                if bridged:
                    events[-len(bridged)] = replace(events[-len(bridged)], adjustment=jump)
            elif b.value < a.value and acc.bucket(b.ts_ms) is not None:
                m = point.rollover_at
                wrapped = None if m is None else m - a.value + b.value
                if m is not None and wrapped is not None and 0 <= wrapped < m / 2:
                    acc.add(b.ts_ms, wrapped)
                    events.append(CounterEvent(point.id, "rollover", b.ts_ms, a.value, b.value,
                                               wrapped * point.scale,
                                               f"register wrapped at {m}: {m} - {a.value} + "
                                               f"{b.value}", m))
                else:
                    events.append(CounterEvent(point.id, "negative", b.ts_ms, a.value, b.value,
                                               0.0, "counter went backwards; counted as 0",
                                               a.value - b.value))
    # A replacement onto another meter id leaves no interval spanning it: bridge both ends.
    for r in replacements:
        if r.new_meter and r.new_meter != point.meter:
            old_pts = [p for m, pts in series.items() if m != r.new_meter for p in pts
                       if p.ts_ms <= r.at_ms]
            new_pts = [p for p in series.get(r.new_meter, []) if p.ts_ms >= r.at_ms]
            last_old = max(old_pts, key=lambda p: p.ts_ms) if old_pts else None
            first_new = min(new_pts, key=lambda p: p.ts_ms) if new_pts else None
            events += _bridge(acc, point, r, last_old, first_new)
    return events


def _gaps(point: str, starts: list[int], end_ms: int, acc: _Acc,
          due: set[int]) -> list[GapRange]:
    out: list[GapRange] = []
    bounds = starts[1:] + [end_ms]
    run: list[tuple[int, int, bool]] = []  # (start, end, empty)
    for s, e in zip(starts, bounds):
        if s in due and (acc.intervals[s] == 0 or acc.long[s] > 0):
            run.append((s, e, acc.intervals[s] == 0))
            continue
        if run:
            out.append(_gap(point, run))
            run = []
    if run:
        out.append(_gap(point, run))
    return out


def _gap(point: str, run: list[tuple[int, int, bool]]) -> GapRange:
    empty = sum(1 for _, _, e in run if e)
    return GapRange(point, run[0][0], run[-1][1], len(run), empty, len(run) - empty)


def interval_energy(store: Store, plant: Plant, start_ms: int, end_ms: int,
                    period: str = "15m", *, until_ms: int | None = None) -> IntervalEnergy:
    """Energy per metering point per ``period`` bucket in ``[start_ms, end_ms)`` (bucket
    boundaries: ``start_ms`` must be one), corrected for replacements and rollovers, with gaps
    and completeness. Buckets starting at or after ``until_ms`` (now) are not yet due."""
    tz = ZoneInfo(plant.timezone)
    starts = bucket_starts(start_ms, end_ms, period, tz)
    bounds = starts[1:] + [end_ms]
    due = {s for s, e in zip(starts, bounds) if until_ms is None or e <= until_ms}
    out: dict[str, PointEnergy] = {}
    for point in plant.points.values():
        replacements = plant.replacements_of(point.id)
        acc = _Acc(starts, period, tz)
        anomalies = 0
        for meter in _series(point, replacements):
            for r in store.rollups(period, gateway=point.gateway, meter=meter,
                                   measurement=point.measurement, start_ms=start_ms,
                                   end_ms=end_ms):
                if r.start_ms not in acc.valid:
                    continue
                acc.amount[r.start_ms] += r.amount
                acc.intervals[r.start_ms] += r.intervals
                acc.long[r.start_ms] += r.long_intervals
                anomalies += r.anomalies
        events = (_corrections(store, acc, point, replacements)
                  if replacements or anomalies else [])
        pe = PointEnergy(point, {s: a * point.scale for s, a in acc.amount.items()
                                 if acc.intervals[s] or a},
                         len(due), sum(1 for s in due if acc.intervals[s] and not acc.long[s]),
                         _gaps(point.id, starts, end_ms, acc, due), events)
        out[point.id] = pe
    return IntervalEnergy(start_ms, end_ms, period, plant.timezone, out)
