"""Monthly and annual energy-carbon reports: per node and energy type, physical amount, kgce and
kgCO2 under one regime, with the factors, completeness, gaps and counter events they rest on.

Node totals never double count: a node's amount of an energy type is the sum of its subtree's
metering points whose own ``parent`` point is outside the subtree (the level-1 incomer of a site,
not also the feeders below it). Each figure is ``amount × factor`` of the row itself, so a reader
can redo every multiplication, and each point carries a reconciliation against its stored
readings: total = (Σ last − first reading per series + Σ event adjustments) × scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from cloud_receiver.accounting.energy import (
    CounterEvent,
    GapRange,
    IntervalEnergy,
    PointEnergy,
    interval_energy,
)
from cloud_receiver.accounting.factors import Choice, Conversion, conversions
from cloud_receiver.accounting.model import Plant
from cloud_receiver.store import CounterPoint, Store

PERIOD = "15m"  # completeness is judged per quarter-hour, the regulator's data granularity


@dataclass(frozen=True)
class Reading:
    series: str  # gateway/meter/measurement
    ts_ms: int
    value: float


@dataclass(frozen=True)
class PointRow:
    id: str
    name: str
    node: str
    level: int
    energy_type: str
    use: str
    unit: str
    amount: float
    kgce: float
    kgco2: float | None
    completeness: float
    gap_hours: float
    readings: tuple[tuple[Reading, Reading], ...]  # (first, last) per series in the window
    adjustment: float  # Σ event adjustments, counter units
    scale: float

    @property
    def reconciled(self) -> float:
        """The amount recomputed from the readings and the events alone."""
        diff = math.fsum(last.value - first.value for first, last in self.readings)
        return (diff + self.adjustment) * self.scale


@dataclass(frozen=True)
class NodeRow:
    node: str
    name: str
    kind: str
    depth: int
    energy_type: str
    unit: str
    amount: float
    kgce: float
    kgco2: float | None
    points: tuple[str, ...]


@dataclass
class Report:
    title: str
    label: str  # "2025-06" or "2025"
    start_ms: int
    end_ms: int
    timezone: str
    choice: Choice
    conversions: dict[str, Conversion]
    points: list[PointRow]
    nodes: list[NodeRow]
    gaps: list[GapRange]
    events: list[CounterEvent]
    months: list[tuple[str, str, float, float, float | None]] = field(default_factory=list)
    # Optional sections added by other modules (the annual scheme scores), rendered after the
    # report's own tables: (title, header, rows).
    appendix: list[tuple[str, list[str], list[list[str | float | int | None]]]] = field(
        default_factory=list)

    @property
    def enterprise_rows(self) -> list[NodeRow]:
        return [n for n in self.nodes if n.depth == 0]

    @property
    def total_kgce(self) -> float:
        return math.fsum(n.kgce for n in self.enterprise_rows)

    @property
    def total_kgco2(self) -> float:
        return math.fsum(n.kgco2 for n in self.enterprise_rows if n.kgco2 is not None)

    @property
    def completeness(self) -> float:
        return min((p.completeness for p in self.points), default=100.0)


def month_bounds(year: int, month: int, tz: ZoneInfo) -> tuple[int, int]:
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _window_readings(store: Store, pe: PointEnergy, meters: list[str], start_ms: int,
                     end_ms: int) -> tuple[tuple[Reading, Reading], ...]:
    """Per series: the reading the period's first interval starts from (the last one at or
    before the start, else the first inside) and the last one closing an interval in it."""
    out: list[tuple[Reading, Reading]] = []
    p = pe.point
    for meter in meters:
        pts: list[CounterPoint] = store.counter_points(p.gateway, meter, p.measurement)
        before = [x for x in pts if x.ts_ms <= start_ms]
        inside = [x for x in pts if start_ms < x.ts_ms <= end_ms]
        if not inside:
            continue
        first = before[-1] if before else inside[0]
        name = f"{p.gateway}/{meter}/{p.measurement}"
        out.append((Reading(name, first.ts_ms, first.value),
                    Reading(name, inside[-1].ts_ms, inside[-1].value)))
    return tuple(out)


def _point_rows(store: Store, plant: Plant, energy: IntervalEnergy,
                conv: dict[str, Conversion]) -> list[PointRow]:
    rows: list[PointRow] = []
    for pid, pe in energy.points.items():
        p = pe.point
        c = conv[p.energy_type]
        meters = [p.meter] + [r.new_meter for r in plant.replacements_of(pid)
                              if r.new_meter and r.new_meter != p.meter]
        amount = pe.total
        rows.append(PointRow(
            pid, p.name, p.node, p.level, p.energy_type, p.use, p.unit, amount,
            amount * c.kgce.value, None if c.co2 is None else amount * c.co2.value,
            pe.completeness, math.fsum(g.hours for g in pe.gaps),
            _window_readings(store, pe, meters, energy.start_ms, energy.end_ms),
            math.fsum(e.adjustment for e in pe.events), p.scale))
    return rows


def _node_rows(plant: Plant, points: list[PointRow], conv: dict[str, Conversion]) -> list[NodeRow]:
    by_id = {p.id: p for p in points}
    out: list[NodeRow] = []

    def walk(node_id: str, depth: int) -> None:
        node = plant.nodes[node_id]
        inside = {p.id for p in plant.points_under(node_id)}
        tops = [by_id[i] for i in sorted(inside)
                if plant.points[i].parent is None or plant.points[i].parent not in inside]
        for etype in sorted({p.energy_type for p in tops}):
            chosen = [p for p in tops if p.energy_type == etype]
            amount = math.fsum(p.amount for p in chosen)
            c = conv[etype]
            out.append(NodeRow(node_id, node.name, node.kind, depth, etype, c.unit, amount,
                               amount * c.kgce.value,
                               None if c.co2 is None else amount * c.co2.value,
                               tuple(p.id for p in chosen)))
        for child in sorted(plant.children(node_id), key=lambda n: n.id):
            walk(child.id, depth + 1)

    walk(plant.enterprise.id, 0)
    return out


def build_report(store: Store, plant: Plant, choice: Choice, start_ms: int, end_ms: int, *,
                 label: str, title: str, now_ms: int | None = None) -> Report:
    """The report of ``[start_ms, end_ms)`` (bucket-aligned local times)."""
    tz = ZoneInfo(plant.timezone)
    on = datetime.fromtimestamp(start_ms / 1000, UTC).astimezone(tz).date()
    conv = conversions({p.energy_type for p in plant.points.values()}, on, choice)
    energy = interval_energy(store, plant, start_ms, end_ms, PERIOD, until_ms=now_ms)
    points = _point_rows(store, plant, energy, conv)
    return Report(title, label, start_ms, end_ms, plant.timezone, choice, conv, points,
                  _node_rows(plant, points, conv),
                  [g for pe in energy.points.values() for g in pe.gaps],
                  [e for pe in energy.points.values() for e in pe.events])


def monthly_report(store: Store, plant: Plant, choice: Choice, year: int, month: int, *,
                   now_ms: int | None = None) -> Report:
    start, end = month_bounds(year, month, ZoneInfo(plant.timezone))
    name = plant.name or plant.enterprise.name
    return build_report(store, plant, choice, start, end, label=f"{year}-{month:02d}",
                        title=f"{name} energy-carbon report {year}-{month:02d}", now_ms=now_ms)


def annual_report(store: Store, plant: Plant, choice: Choice, year: int, *,
                  now_ms: int | None = None) -> Report:
    """The year's report plus the enterprise's monthly amounts per energy type."""
    tz = ZoneInfo(plant.timezone)
    start, _ = month_bounds(year, 1, tz)
    _, end = month_bounds(year, 12, tz)
    name = plant.name or plant.enterprise.name
    report = build_report(store, plant, choice, start, end, label=str(year),
                          title=f"{name} energy-carbon report {year}", now_ms=now_ms)
    for month in range(1, 13):
        if now_ms is not None and month_bounds(year, month, tz)[0] >= now_ms:
            break
        part = monthly_report(store, plant, choice, year, month, now_ms=now_ms)
        report.months += [(part.label, n.energy_type, n.amount, n.kgce, n.kgco2)
                          for n in part.enterprise_rows]
    return report


def local_text(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(tz)).strftime(
        "%Y-%m-%d %H:%M")


def parse_month(text: str) -> tuple[int, int]:
    """``YYYY-MM`` → (year, month); ValueError naming the input otherwise."""
    try:
        d = date.fromisoformat(f"{text}-01")
    except ValueError:
        raise ValueError(f"{text!r} is not a month like 2025-06") from None
    return d.year, d.month
