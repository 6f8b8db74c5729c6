"""The energy-carbon report: kWh, kgce and kgCO2 per meter per local day, with its evidence.

A report always carries the factors it used (value, unit, source, status, table version), the
quarantine counts and the counter anomalies, so a number is never shown without what it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from cloud_receiver.carbon import FactorSet, select_factors
from cloud_receiver.config import CarbonConfig
from cloud_receiver.energy import CounterAnomaly, daily_energy
from cloud_receiver.ingest import DUPLICATE_COUNTER
from cloud_receiver.store import Store
from nengtan.measurements import ENERGY_IMPORT

# Counters are read to 0.01 kWh at best; six decimals keep every digit that means something
# and hide binary floating-point noise (0.1 + 0.2) from people and diff tools.
DECIMALS = 6


@dataclass(frozen=True)
class ReportRow:
    gateway: str
    meter: str
    day: date
    kwh: float
    kgce: float
    kgco2: float
    intervals: int


@dataclass(frozen=True)
class Report:
    rows: tuple[ReportRow, ...]
    factors: FactorSet
    timezone: str
    quarantine: dict[str, int]
    duplicates: int
    anomalies: tuple[CounterAnomaly, ...]

    def as_dict(self) -> dict[str, object]:
        r = DECIMALS
        return {
            "timezone": self.timezone,
            "factors": self.factors.as_dict(),
            "rows": [{"gateway": x.gateway, "meter": x.meter, "day": x.day.isoformat(),
                      "kwh": round(x.kwh, r), "kgce": round(x.kgce, r),
                      "kgco2": round(x.kgco2, r), "intervals": x.intervals} for x in self.rows],
            "anomalies": [{"gateway": a.gateway, "meter": a.meter, "day": a.day.isoformat(),
                           "ts_ms": a.ts_ms, "previous": a.previous, "current": a.current}
                          for a in self.anomalies],
            "quarantine": dict(self.quarantine),
            "duplicates": self.duplicates,
        }


def build_report(store: Store, carbon: CarbonConfig, *, day: date | None = None) -> Report:
    """Compute the report from everything stored; ``day`` keeps only that local day's rows
    (the interval that ends on it still uses the last reading before midnight)."""
    factors = select_factors(carbon.regime, carbon.region, carbon.year)
    energy = daily_energy(store.counter_samples(ENERGY_IMPORT), ZoneInfo(carbon.timezone))
    coal, grid = factors.coal.value, factors.grid_co2.value
    rows = tuple(ReportRow(d.gateway, d.meter, d.day, d.kwh, d.kwh * coal, d.kwh * grid,
                           d.intervals)
                 for d in energy.days if day is None or d.day == day)
    anomalies = tuple(a for a in energy.anomalies if day is None or a.day == day)
    return Report(rows, factors, carbon.timezone, store.quarantine_counts(),
                  store.counters().get(DUPLICATE_COUNTER, 0), anomalies)


def render_text(report: Report) -> str:
    """A plain table for people; ``as_dict`` is the machine-readable form."""
    lines = [f"{'gateway':<16} {'meter':<12} {'day':<10} {'kWh':>14} {'kgce':>14} "
             f"{'kgCO2':>14} {'intervals':>9}"]
    for x in report.rows:
        lines.append(f"{x.gateway:<16} {x.meter:<12} {x.day.isoformat():<10} {x.kwh:>14.3f} "
                     f"{x.kgce:>14.3f} {x.kgco2:>14.3f} {x.intervals:>9}")
    if not report.rows:
        lines.append("(no energy intervals stored for this selection)")
    g, c = report.factors.grid_co2, report.factors.coal
    lines += [
        "",
        f"Days are local days in {report.timezone}; an interval counts on the day it ends.",
        f"Grid CO2 factor: {g.value} {g.unit} [{g.key}, status {g.status}, table {g.table_version}]",
        f"  source: {g.source}",
        f"Standard coal:   {c.value} {c.unit} [{c.key}, status {c.status}, table {c.table_version}]",
        f"  source: {c.source}",
        "",
        f"Duplicates acknowledged: {report.duplicates}",
        "Quarantined: " + (", ".join(f"{k} {v}" for k, v in report.quarantine.items()) or "none"),
        f"Counter anomalies (counted as 0 kWh): {len(report.anomalies)}",
    ]
    for a in report.anomalies:
        when = datetime.fromtimestamp(a.ts_ms / 1000, ZoneInfo(report.timezone)).isoformat()
        lines.append(f"  {a.gateway}/{a.meter} at {when}: {a.previous} -> {a.current} kWh")
    return "\n".join(lines)
