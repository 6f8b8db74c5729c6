"""The figures a scheme score can take from stored data and the plant files, each with where it
came from: the year's report (energy, emissions, electricity, factors), output.csv, products.toml
and the benchmark table, the ledger and the equipment register.

A figure that cannot be derived is ``missing`` with the reason, never a stand-in number: a
score built on a guessed input would look as checked as a real one. Report figures are taken at
the 6 decimals the report's machine formats print (binary float noise would otherwise reach a
boundary such as "exactly 6 %"), then carried as decimals.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from cloud_receiver.accounting.equipment import EQUIPMENT_FILE, grade1_share, load_equipment
from cloud_receiver.accounting.factors import Choice
from cloud_receiver.accounting.ledger import LEDGER_FILE, Deductions, Ledger, deductions, load_ledger
from cloud_receiver.accounting.model import Plant
from cloud_receiver.accounting.operations import load_products
from cloud_receiver.accounting.output import OutputRecord, load_output
from cloud_receiver.accounting.report import Report, build_report, month_bounds
from cloud_receiver.accounting.scheme_inputs import SchemeInputs
from cloud_receiver.accounting.schemes import fmt
from cloud_receiver.accounting.shifts import load_shifts
from cloud_receiver.store import Store
from nengtan.errors import NengtanError

_MICRO = Decimal("0.000001")
_THOUSAND = Decimal(1000)
_UNIT = {"kgce": "kgce", "kgco2": "kgCO2"}  # report column -> unit


@dataclass(frozen=True)
class Input:
    """One score input: its value and where it came from (``derived`` from which figure,
    ``entered`` in which file, or ``missing`` and why)."""

    name: str
    value: Decimal | None
    origin: str  # "derived" | "entered" | "missing"
    provenance: str

    def renamed(self, name: str) -> Input:
        return Input(name, self.value, self.origin, self.provenance)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "value": None if self.value is None else fmt(self.value),
                "origin": self.origin, "provenance": self.provenance}


def derived(name: str, value: Decimal, provenance: str) -> Input:
    return Input(name, value, "derived", provenance)


def missing(name: str, why: str) -> Input:
    return Input(name, None, "missing", why)


def _six(x: float) -> Decimal:
    return Decimal(repr(x)).quantize(_MICRO, rounding=ROUND_HALF_UP)


def year_report(store: Store, plant: Plant, choice: Choice, year: int, *,
                now_ms: int | None = None) -> Report:
    """The calendar year's report without the monthly breakdown (the scores need totals)."""
    tz = ZoneInfo(plant.timezone)
    start, end = month_bounds(year, 1, tz)[0], month_bounds(year, 12, tz)[1]
    name = plant.name or plant.enterprise.name
    return build_report(store, plant, choice, start, end, label=str(year),
                        title=f"{name} energy-carbon report {year}", now_ms=now_ms)


def points_with_data(report: Report) -> set[str]:
    """Points with at least one interval ending in the period. A lone reading on the period's
    edge (the first reading ever, at midnight of 1 January) says nothing about the period."""
    return {p.id for p in report.points if any(b.ts_ms > a.ts_ms for a, b in p.readings)}


def has_readings(report: Report) -> bool:
    return bool(points_with_data(report))


class Figures:
    """Derived figures of ``year``; each is computed on first use."""

    def __init__(self, store: Store, plant: Plant, choice: Choice, year: int, report: Report,
                 entered: SchemeInputs, *, now_ms: int | None = None) -> None:
        self.store, self.plant, self.choice, self.year = store, plant, choice, year
        self.report, self.entered, self.now_ms = report, entered, now_ms
        self.node = entered.node or plant.enterprise.id
        self.ledger: Ledger | None = (load_ledger(plant.directory)
                                      if (plant.directory / LEDGER_FILE).exists() else None)

    def _report_of(self, year: int) -> Report | str:
        if year == self.year:
            return self.report
        try:
            return year_report(self.store, self.plant, self.choice, year, now_ms=self.now_ms)
        except NengtanError as exc:  # e.g. no factor in force that year
            return f"no report for {year}: {exc}"

    def _node_kg(self, year: int, node: str, column: str) -> tuple[Decimal | None, str]:
        """Σ ``column`` (kgce or kgco2) of ``node`` over the energy types, or None and why. Every
        point behind it must have data: a total missing a meter would pass for a real one."""
        report = self._report_of(year)
        if isinstance(report, str):
            return None, report
        rows = [n for n in report.nodes if n.node == node]
        points = sorted({p for n in rows for p in n.points})
        silent = [p for p in points if p not in points_with_data(report)]
        if not rows or silent:
            return None, f"no stored readings for {', '.join(silent or [node])} in {year}"
        counted = [n for n in rows if getattr(n, column) is not None]
        total = sum((_six(getattr(n, column)) for n in counted), Decimal(0))
        parts = " + ".join(f"{fmt(_six(getattr(n, column)))} ({n.energy_type})" for n in counted)
        none = [n.energy_type for n in rows if getattr(n, column) is None]
        note = f" (no CO2 factor for {', '.join(none)} in this regime)" if none else ""
        who = "enterprise" if node == self.plant.enterprise.id else f"node {node}"
        return total, (f"annual report {year}, {who}: {parts or '0'} = {fmt(total)} "
                       f"{_UNIT[column]}{note}")

    @functools.cached_property
    def energy_tce(self) -> Input:
        kg, text = self._node_kg(self.year, self.plant.enterprise.id, "kgce")
        if kg is None:
            return missing("energy_tce", text)
        return derived("energy_tce", kg / _THOUSAND, f"{text} ÷ 1000 = {fmt(kg / _THOUSAND)} tce")

    @functools.cached_property
    def emissions_t(self) -> Input:
        kg, text = self._node_kg(self.year, self.plant.enterprise.id, "kgco2")
        if kg is None:
            return missing("emissions_t", text)
        return derived("emissions_t", kg / _THOUSAND, f"{text} ÷ 1000 = {fmt(kg / _THOUSAND)} "
                       "tCO2 (energy emissions only: process emissions are not metered)")

    @functools.cached_property
    def electricity_kwh(self) -> Input:
        rows = [n for n in self.report.enterprise_rows if n.energy_type == "electricity"]
        silent = [] if not rows else [p for p in rows[0].points
                                      if p not in points_with_data(self.report)]
        if not rows or silent:
            return missing("electricity_kwh", f"no stored electricity readings for "
                           f"{', '.join(silent or ['the enterprise'])} in {self.year}")
        value = _six(rows[0].amount)
        return derived("electricity_kwh", value, f"annual report {self.year}, enterprise "
                       f"electricity {fmt(value)} kWh ({' + '.join(rows[0].points)})")

    def _electricity_factor(self, which: str) -> Input:
        c = self.report.conversions.get("electricity")
        factor = None if c is None else (c.co2 if which == "co2" else c.kgce)
        if factor is None:
            why = "the plant meters no electricity" if c is None else c.co2_note
            return missing(which, f"no electricity {which} factor: {why}")
        return derived(which, Decimal(repr(factor.value)),
                       f"{factor.key} = {factor.value} {factor.unit} [{factor.table_version}, "
                       f"status {factor.status}]")

    @functools.cached_property
    def deductions(self) -> tuple[Deductions | None, str]:
        """The ledger's deductions for the year, or None and why."""
        if self.ledger is None:
            return None, f"no {LEDGER_FILE} (record 绿电/绿证/offsets with `nengtan receiver ledger add`)"
        green = [e for e in self.ledger.entries if e.for_year == self.year and e.section != "offset"]
        kwh, factor = self.electricity_kwh, self._electricity_factor("co2")
        if green and (kwh.value is None or factor.value is None):
            return None, (f"{LEDGER_FILE} has green electricity for {self.year} but "
                          f"{(kwh if kwh.value is None else factor).provenance}")
        return deductions(self.ledger, self.year, kwh.value or 0, factor.value or 0), ""

    @functools.cached_property
    def offsets_t(self) -> Input:
        d, why = self.deductions
        if d is None:
            return missing("offsets_t", why)
        ids = ", ".join(d.entries) or "none"
        return derived("offsets_t", d.total_t, f"{LEDGER_FILE}: {d.working} (entries: {ids})")

    @functools.cached_property
    def renewable_tce(self) -> Input:
        d, why = self.deductions
        coef = self._electricity_factor("kgce")
        if d is None or coef.value is None:
            return missing("renewable_tce", why or coef.provenance)
        value = d.usable_mwh * coef.value  # kgce/kWh is tce/MWh
        return derived("renewable_tce", value, (
            f"{LEDGER_FILE} 绿电 + 绿证 for {self.year}: min({fmt(d.green_mwh)} MWh claimed, "
            f"{fmt(d.electricity_mwh)} MWh used) = {fmt(d.usable_mwh)} MWh × {fmt(coef.value)} "
            f"tce/MWh ({coef.provenance}) = {fmt(value)} tce"))

    def baseline_t(self) -> Input:
        day = date(self.year, 12, 31)
        b = None if self.ledger is None else self.ledger.baseline_on(day)
        if b is None:
            return missing("baseline_t", f"no [baseline] in {LEDGER_FILE} (set it with "
                           "`nengtan receiver ledger baseline`)")
        how = (f"recalculated on {b.recorded_on}: {b.reason}" if b.recorded_on else "original")
        return derived("baseline_t", b.emissions_t, f"{LEDGER_FILE} baseline year {b.year}, "
                       f"{fmt(b.emissions_t)} tCO2 as it stood on {day} ({how})")

    # -- output, unit-product energy and intensities -----------------------------------------

    @functools.cached_property
    def _records(self) -> list[OutputRecord]:
        return load_output(self.plant.directory, load_shifts(self.plant.directory),
                           nodes=self.plant.nodes)

    @functools.cached_property
    def product(self) -> tuple[str | None, str]:
        if self.entered.product:
            return self.entered.product, f"{self.entered.path.name} [unit_product]"
        names = sorted({r.product for r in self._records if r.day.year == self.year})
        if len(names) == 1:
            return names[0], f"the only product in output.csv for {self.year}"
        why = (f"several products in output.csv for {self.year} ({', '.join(names)})" if names
               else f"no output recorded in output.csv for {self.year}")
        return None, f"{why}: name one in {self.entered.path.name} [unit_product] product"

    def output(self, year: int) -> Input:
        product, why = self.product
        if product is None:
            return missing("output", why)
        inside = {n for n in self.plant.nodes
                  if any(a.id == self.node for a in self.plant.ancestors(n))}
        rows = [r for r in self._records
                if r.day.year == year and r.product == product and r.node in inside]
        reporting = {r.node for r in rows}
        # A line's output is inside its enterprise's: count a node's records only when no node
        # above it (within the measured subtree) also reports the product.
        top = [r for r in rows if not any(a.id in reporting for a in self.plant.ancestors(r.node)[1:]
                                          if a.id in inside)]
        if not top:
            return missing("output", f"no output of {product!r} under node {self.node} in "
                           f"output.csv for {year}")
        value = sum((Decimal(repr(r.quantity)) for r in top), Decimal(0))
        nodes = ", ".join(sorted({r.node for r in top}))
        return derived("output", value, f"output.csv {year}: {product} at {nodes}, "
                       f"{len(top)} record(s) = {fmt(value)} {top[0].unit}")

    @property
    def output_unit(self) -> str:
        product = self.product[0]
        return next((r.unit for r in self._records if r.product == product), "unit")

    def _per_output(self, name: str, year: int, column: str, divisor: Decimal,
                    unit: str) -> Input:
        (kg, text), out = self._node_kg(year, self.node, column), self.output(year)
        if kg is None:
            return missing(name, text)
        if out.value is None or out.value <= 0:
            return missing(name, out.provenance if out.value is None else "output is zero")
        value = kg / divisor / out.value
        return derived(name, value, f"{text}{' ÷ 1000' if divisor != 1 else ''} ÷ output "
                       f"{fmt(out.value)} ({out.provenance}) = {fmt(value)} {unit}")

    def unit_energy(self) -> Input:
        return self._per_output("unit_energy", self.year, "kgce", Decimal(1),
                                f"kgce/{self.output_unit}")

    def intensity(self, year: int) -> Input:
        return self._per_output("intensity", year, "kgco2", _THOUSAND,
                                f"tCO2/{self.output_unit}")

    def benchmark(self) -> Input:
        product = self.product[0]
        if product is None:
            return missing("benchmark", self.product[1])
        table = load_products(self.plant)
        b = table.get(product)
        if b is None:
            return missing("benchmark", f"no benchmark mapped for product {product!r} in "
                           "products.toml")
        if b.unit != f"kgce/{self.output_unit}":
            return missing("benchmark", f"benchmark {b.key} is in {b.unit}, output in "
                           f"{self.output_unit}")
        return derived("benchmark", Decimal(repr(b.benchmark)), (
            f"{b.version} {b.key} 标杆水平 {b.benchmark:g} {b.unit} (products.toml maps "
            f"{product}; status {b.status}: {b.source})"))

    # -- equipment ---------------------------------------------------------------------------

    def equipment_share(self, kind: str, basis: str) -> dict[str, Input]:
        path = self.plant.directory / EQUIPMENT_FILE
        if not path.exists():
            why = f"no {EQUIPMENT_FILE} in the plant directory"
            return {"part": missing("part", why), "whole": missing("whole", why)}
        try:
            share = grade1_share(load_equipment(self.plant.directory), kind, basis)
        except ValueError as exc:
            return {"part": missing("part", str(exc)), "whole": missing("whole", str(exc))}
        if share.whole <= 0:
            why = f"{EQUIPMENT_FILE} lists no in-service {kind}"
            return {"part": missing("part", why), "whole": missing("whole", why)}
        unit = "unit(s)" if basis == "count" else "kW rated"
        return {"part": derived("part", share.part, f"{EQUIPMENT_FILE}: grade-1 {kind} in "
                                f"service, {fmt(share.part)} {unit}"),
                "whole": derived("whole", share.whole, f"{EQUIPMENT_FILE}: all {kind} in service"
                                 f", {fmt(share.whole)} {unit} ({', '.join(share.units)})")}
