"""Ties the operations modules to the stored data: energy per node and window in kgce and kgCO2
(for ``intensity``), a month's unit-product intensities, and their benchmark classification.

A node's energy is what flows into it once: of the metering points in its subtree, those whose
upstream point (``parent``) is outside the subtree. A line with a level-2 feeder and level-3
equipment meters under it counts the feeder only; adding the equipment would count it twice.
Energy comes from the 15-minute series of ``energy.interval_energy`` (replacements, rollovers
applied; gaps not filled), so the completeness of any shift window is known exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from cloud_receiver.accounting._files import read_toml
from cloud_receiver.accounting.benchmarks import Benchmark, Comparison, benchmarks, compare
from cloud_receiver.accounting.energy import IntervalEnergy, interval_energy
from cloud_receiver.accounting.factors import Choice, Conversion, conversions
from cloud_receiver.accounting.intensity import (
    EnergyTotal,
    Fit,
    UnitIntensity,
    correlate,
    unit_intensities,
)
from cloud_receiver.accounting.model import MeterPoint, Plant
from cloud_receiver.accounting.output import load_output
from cloud_receiver.accounting.shifts import load_shifts
from cloud_receiver.store import Store
from nengtan.errors import ConfigError, NengtanError

PRODUCTS_FILE = "products.toml"
_BUCKET = 900_000  # 15 minutes


def node_points(plant: Plant, node: str) -> list[MeterPoint]:
    """The points measuring what flows into ``node``'s subtree, each flow once."""
    under = plant.points_under(node)
    ids = {p.id for p in under}
    return sorted((p for p in under if p.parent not in ids), key=lambda p: p.id)


def choice_of(plant: Plant) -> Choice:
    a = plant.accounting
    if a is None:
        raise ConfigError(str(plant.directory / "plant.toml"),
                          ["At 'accounting': missing; intensities need the factor choice"
                           " (regime, region, year)"])
    return Choice(a.regime, a.region, a.year, a.electricity_basis)


class NodeEnergy:
    """``(node, start_ms, end_ms) -> EnergyTotal`` over one precomputed 15-minute series.
    Windows must fall on 15-minute boundaries inside the series (shift calendars do)."""

    def __init__(self, plant: Plant, energy: IntervalEnergy, conv: Mapping[str, Conversion],
                 until_ms: int | None = None) -> None:
        self.plant, self.energy, self.conv, self.until_ms = plant, energy, conv, until_ms

    def __call__(self, node: str, start_ms: int, end_ms: int) -> EnergyTotal:
        if start_ms % _BUCKET or end_ms % _BUCKET or start_ms < self.energy.start_ms \
                or end_ms > self.energy.end_ms:
            raise ValueError(f"window {start_ms}..{end_ms} is not whole 15-minute buckets"
                             " inside the computed series")
        stop = end_ms if self.until_ms is None else min(end_ms, self.until_ms)
        due = max(0, (stop - start_ms) // _BUCKET)
        kgce: list[float] = []
        kgco2: list[float] = []
        expected = covered = 0
        for p in node_points(self.plant, node):
            pe = self.energy.points[p.id]
            amount = math.fsum(a for s, a in pe.amounts.items() if start_ms <= s < end_ms)
            c = self.conv[p.energy_type]
            kgce.append(amount * c.kgce.value)
            kgco2.append(amount * c.co2.value if c.co2 is not None else 0.0)
            gap = sum(max(0, min(g.end_ms, stop) - max(g.start_ms, start_ms)) // _BUCKET
                      for g in pe.gaps)
            expected += due
            covered += due - gap
        return EnergyTotal(math.fsum(kgce), math.fsum(kgco2),
                           100.0 if expected == 0 else 100.0 * covered / expected)


def month_intensities(store: Store, plant: Plant, month: date, grain: str, *,
                      until_ms: int | None = None,
                      choice: Choice | None = None) -> list[UnitIntensity]:
    """Unit-product intensities of the output recorded for ``month`` (production dates in it),
    per ``grain`` (shift, day or month). The energy series spans the month plus the day after,
    so a night shift starting on the last evening is whole."""
    calendar = load_shifts(plant.directory)
    records = [r for r in load_output(plant.directory, calendar, nodes=plant.nodes)
               if (r.day.year, r.day.month) == (month.year, month.month)]
    if not records:
        return []
    # The production month: from the 1st's first shift to the next 1st's first shift (the
    # shifts tile each day, so every shift of the month lies inside).
    first = month.replace(day=1)
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    start = calendar.slots_of_day(first)[0].start_ms
    end = calendar.slots_of_day(after)[0].start_ms
    energy = interval_energy(store, plant, start, end, "15m", until_ms=until_ms)
    types = {p.energy_type for p in plant.points.values()}
    conv = conversions(types, month.replace(day=1), choice or choice_of(plant))
    return unit_intensities(records, calendar, NodeEnergy(plant, energy, conv, until_ms), grain)


def load_products(plant: Plant,
                  table: Mapping[str, Benchmark] | None = None) -> dict[str, Benchmark]:
    """``products.toml``: ``[products.<product>] benchmark = "<key>"`` maps the products of
    output.csv to entries of the benchmark table (absent file: none mapped)."""
    path = plant.directory / PRODUCTS_FILE
    doc = read_toml(path)
    if doc is None:
        return {}
    table = benchmarks() if table is None else table
    products = doc.get("products", {})
    problems, out = [], {}
    for name, entry in products.items() if isinstance(products, dict) else ():
        key = entry.get("benchmark") if isinstance(entry, dict) else None
        if not isinstance(key, str) or key not in table:
            problems.append(f"At 'products.{name}.benchmark': {key!r} is not in the benchmark"
                            " table; known: " + ", ".join(sorted(table)))
        else:
            out[name] = table[key]
    if problems:
        raise ConfigError(str(path), problems)
    return out


@dataclass(frozen=True)
class BenchmarkRow:
    intensity: UnitIntensity
    comparison: Comparison | None
    note: str = ""


def benchmark_rows(rows: Sequence[UnitIntensity],
                   products: Mapping[str, Benchmark]) -> list[BenchmarkRow]:
    """Each intensity next to its product's benchmark (kgce per output unit only)."""
    out = []
    for u in rows:
        b = products.get(u.product or "")
        if b is None or u.kgce_per_unit is None:
            out.append(BenchmarkRow(u, None, "no benchmark mapped" if b is None else u.note))
        elif b.unit != f"kgce/{u.unit}":
            out.append(BenchmarkRow(u, None, f"benchmark is in {b.unit}, output in {u.unit}"))
        else:
            out.append(BenchmarkRow(u, compare(u.kgce_per_unit, b)))
    return out


def month_correlation(store: Store, plant: Plant, month: date, node: str, *,
                      output_node: str | None = None, product: str | None = None,
                      choice: Choice | None = None) -> tuple[Fit, list[UnitIntensity]]:
    """Energy of ``node`` (a line or a piece of equipment) against the per-shift output of
    ``output_node`` (default ``node``; for equipment, its line) over ``month``."""
    calendar = load_shifts(plant.directory)
    records = [r for r in load_output(plant.directory, calendar, nodes=plant.nodes)
               if (r.day.year, r.day.month) == (month.year, month.month) and r.shift]
    if not records:
        raise NengtanError(f"no per-shift output of {output_node or node!r} in "
                           f"{month.year:04d}-{month.month:02d}")
    slots = calendar.slots(min(r.day for r in records), max(r.day for r in records))
    start, end = slots[0].start_ms, slots[-1].end_ms
    energy = interval_energy(store, plant, start - start % _BUCKET, end, "15m")
    conv = conversions({p.energy_type for p in plant.points.values()}, month.replace(day=1),
                       choice or choice_of(plant))
    return correlate(records, calendar, NodeEnergy(plant, energy, conv), node,
                     output_node=output_node, product=product)
