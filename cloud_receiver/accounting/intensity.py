"""Energy and CO2 per unit of product, and how energy follows output (a least-squares line).

``e = E / P`` (GB/T 2589-2020: unit-product comprehensive energy, kgce per unit of qualified
product) per node and product, per shift, production day or month. The energy side is a callable
``(node, start_ms, end_ms) -> EnergyTotal`` so this module does the arithmetic only; the plant
model and the factor tables supply it (``accounting.operations.node_energy``).

A node making several products in one period has no single ``E / P``: the energy would have to
be allocated first, so such rows carry ``None`` and say why instead of a number.

The fit ``energy = fixed + variable × output`` over shifts is what an energy manager reads as the
base load of a line (``fixed``, kgce per shift at zero output) and its marginal consumption
(``variable``, kgce per unit); Pearson's ``r`` says how much of the variation output explains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloud_receiver.accounting.output import OutputRecord
from cloud_receiver.accounting.shifts import ShiftCalendar
from nengtan.errors import NengtanError


@dataclass(frozen=True)
class EnergyTotal:
    kgce: float
    kgco2: float
    completeness: float  # percent of the window's expected readings present, 0..100


EnergyFn = Callable[[str, int, int], EnergyTotal]


@dataclass(frozen=True)
class UnitIntensity:
    node: str
    product: str | None  # None when several products share the period
    period: str  # "2025-06-01/2" (shift), "2025-06-01" (day) or "2025-06" (month)
    start_ms: int
    end_ms: int
    output: float | None
    unit: str | None
    kgce: float
    kgco2: float
    kgce_per_unit: float | None
    kgco2_per_unit: float | None
    completeness: float
    note: str = ""


GRAINS = ("shift", "day", "month")


def _bounds(calendar: ShiftCalendar, grain: str, record: OutputRecord) -> tuple[str, int, int]:
    # A production day runs from its earliest shift's start to its latest shift's end: with
    # shifts starting at midnight that is the calendar day; with a 22:00 night shift it is not.
    if grain == "shift":
        slot = next(s for s in calendar.slots_of_day(record.day) if s.shift == record.shift)
        return slot.label, slot.start_ms, slot.end_ms
    if grain == "day":
        slots = calendar.slots_of_day(record.day)
        return record.day.isoformat(), slots[0].start_ms, max(s.end_ms for s in slots)
    first = record.day.replace(day=1)
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return (f"{first.year:04d}-{first.month:02d}", calendar.slots_of_day(first)[0].start_ms,
            calendar.slots_of_day(after)[0].start_ms)


def unit_intensities(records: Sequence[OutputRecord], calendar: ShiftCalendar, energy: EnergyFn,
                     grain: str) -> list[UnitIntensity]:
    """kgce and kgCO2 per unit of product per node and ``grain`` period (``shift``: only
    records given per shift; ``day`` and ``month``: shift records are summed)."""
    if grain not in GRAINS:
        raise NengtanError(f"no intensity grain {grain!r}; use one of {', '.join(GRAINS)}")
    groups: dict[tuple[str, str], tuple[int, int, dict[str, list[OutputRecord]]]] = {}
    for r in records:
        if grain == "shift" and r.shift is None:
            continue
        label, start, end = _bounds(calendar, grain, r)
        groups.setdefault((r.node, label), (start, end, {}))[2].setdefault(r.product, []).append(r)
    out = []
    for (node, label), (start, end, products) in sorted(groups.items()):
        total = energy(node, start, end)
        if len(products) > 1:
            out.append(UnitIntensity(
                node, None, label, start, end, None, None, total.kgce, total.kgco2, None, None,
                total.completeness,
                f"several products ({', '.join(sorted(products))}): allocate energy first"))
            continue
        (product, rows), = products.items()
        quantity = sum(r.quantity for r in rows)
        out.append(UnitIntensity(
            node, product, label, start, end, quantity, rows[0].unit, total.kgce, total.kgco2,
            _per(total.kgce, quantity), _per(total.kgco2, quantity), total.completeness,
            "" if quantity > 0 else "no output: intensity undefined"))
    return out


def _per(amount: float, quantity: float) -> float | None:
    return amount / quantity if quantity > 0 else None


@dataclass(frozen=True)
class Fit:
    """``energy = fixed + variable × output`` fitted by least squares over ``n`` periods."""

    n: int
    fixed: float  # energy at zero output, per period (base load)
    variable: float  # energy per unit of output
    r: float  # Pearson correlation coefficient
    r2: float


def fit_line(points: Sequence[tuple[float, float]]) -> Fit:
    """Least squares through ``(output, energy)`` points. Needs two or more points with
    different outputs; a constant energy gives r = 0 (output explains none of it)."""
    n = len(points)
    if n < 2:
        raise NengtanError(f"a fit needs at least 2 periods with output, got {n}")
    mean_x = math.fsum(x for x, _ in points) / n
    mean_y = math.fsum(y for _, y in points) / n
    sxx = math.fsum((x - mean_x) ** 2 for x, _ in points)
    syy = math.fsum((y - mean_y) ** 2 for _, y in points)
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in points)
    if sxx == 0:
        raise NengtanError(f"every one of the {n} periods has the same output ({mean_x:g}):"
                           " energy cannot be split into fixed and variable parts")
    slope = sxy / sxx
    r = 0.0 if syy == 0 else sxy / math.sqrt(sxx * syy)
    return Fit(n, mean_y - slope * mean_x, slope, r, r * r)


def correlate(records: Sequence[OutputRecord], calendar: ShiftCalendar, energy: EnergyFn,
              node: str, *, output_node: str | None = None,
              product: str | None = None) -> tuple[Fit, list[UnitIntensity]]:
    """Fit the energy of ``node`` (a line, or one piece of equipment) against the per-shift
    output of ``output_node`` (default: ``node`` itself; for equipment, its line). Returns the
    fit and the shift rows it was made from (energy of ``node``, output of ``output_node``)."""
    source = output_node or node
    chosen = [r for r in records if r.node == source and r.shift is not None
              and (product is None or r.product == product)]
    rows = [u for u in unit_intensities(chosen, calendar, energy, "shift") if u.product]
    if node != source:
        rows = [_with_energy(u, node, energy(node, u.start_ms, u.end_ms)) for u in rows]
    return fit_line([(u.output or 0.0, u.kgce) for u in rows]), rows


def _with_energy(u: UnitIntensity, node: str, total: EnergyTotal) -> UnitIntensity:
    quantity = u.output or 0.0
    return UnitIntensity(node, u.product, u.period, u.start_ms, u.end_ms, u.output, u.unit,
                         total.kgce, total.kgco2, _per(total.kgce, quantity),
                         _per(total.kgco2, quantity),
                         total.completeness, u.note)
