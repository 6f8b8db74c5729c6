"""Unit-product energy against the national benchmark (标杆水平) and baseline (基准水平).

The Henan super-efficiency score starts from "at the benchmark or the limit standard's advanced
value" and the NDRC lists require plants above the baseline to upgrade, so a line's measured
``kgce/t`` is only useful next to those two numbers. They are data (``factors/benchmarks.toml``)
in versioned tables, each value with its source and status; a comparison names the version it
used. Lower is better for every indicator, including the converter process whose values are
negative (net energy recovered), so "gap" is given in absolute units and in percent of the
benchmark only where the benchmark is positive.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from nengtan.errors import ConfigError, NengtanError

TABLE_FILE = "benchmarks.toml"
_PRODUCT_KEYS = {"name", "indicator", "unit", "benchmark", "baseline", "levels", "source",
                 "status"}


@dataclass(frozen=True)
class Benchmark:
    key: str
    name: str
    indicator: str
    unit: str
    benchmark: float  # 标杆水平
    baseline: float  # 基准水平
    levels: tuple[float, ...]  # limit-standard levels 1, 2, 3 (best first), if published
    source: str
    status: str  # V / C / U as in standards.md
    version: str  # "<file>@<version>"


@dataclass(frozen=True)
class Comparison:
    benchmark: Benchmark
    value: float
    classification: str  # "benchmark" | "between" | "below_baseline"
    label: str  # Chinese wording for reports
    gap: float  # value - benchmark, in the indicator's unit (<= 0: at or better than it)
    gap_pct: float | None  # gap / benchmark × 100, when the benchmark is positive
    limit_level: int | None  # best limit-standard level (1..3) the value meets, if any

    def as_dict(self) -> dict[str, object]:
        b = self.benchmark
        return {"product": b.key, "name": b.name, "unit": b.unit, "value": self.value,
                "benchmark": b.benchmark, "baseline": b.baseline,
                "classification": self.classification, "label": self.label, "gap": self.gap,
                "gap_pct": self.gap_pct, "limit_level": self.limit_level,
                "source": b.source, "status": b.status, "table_version": b.version}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_table(doc: Mapping[str, Any], source: str,
                version: str | None = None) -> dict[str, Benchmark]:
    """The products of one version (default: ``current``) of a benchmark table document."""
    problems: list[str] = []
    versions = doc.get("versions")
    chosen = version or doc.get("current")
    if not isinstance(versions, dict) or not isinstance(chosen, str) or chosen not in versions:
        known = ", ".join(versions) if isinstance(versions, dict) else "none"
        raise ConfigError(source, [f"At 'current': no version {chosen!r} (known: {known})"])
    products = versions[chosen].get("products", {})
    out: dict[str, Benchmark] = {}
    for key, p in products.items():
        where = f"At 'versions.{chosen}.products.{key}"
        if not isinstance(p, dict):
            problems.append(f"{where}': expected a table")
            continue
        unknown = sorted(set(p) - _PRODUCT_KEYS)
        if unknown:
            problems.append(f"{where}': unknown key(s) {', '.join(unknown)}")
        bad = len(problems)
        for field in ("name", "indicator", "unit", "source"):
            if not isinstance(p.get(field), str) or not p[field]:
                problems.append(f"{where}.{field}': expected a non-empty string")
        if p.get("status") not in ("V", "C", "U"):
            problems.append(f"{where}.status': expected V, C or U, got {p.get('status')!r}")
        for field in ("benchmark", "baseline"):
            if not _number(p.get(field)):
                problems.append(f"{where}.{field}': expected a number, got {p.get(field)!r}")
        levels = p.get("levels", [])
        if not isinstance(levels, list) or not all(_number(x) for x in levels):
            problems.append(f"{where}.levels': expected a list of numbers")
            levels = []
        if len(problems) > bad:
            continue
        if p["benchmark"] > p["baseline"]:
            problems.append(f"{where}': benchmark {p['benchmark']} is above baseline"
                            f" {p['baseline']}; lower is better, so it must not be")
        if levels != sorted(levels):
            problems.append(f"{where}.levels': expected best (lowest) first")
        out[key] = Benchmark(key, p["name"], p["indicator"], p["unit"], float(p["benchmark"]),
                             float(p["baseline"]), tuple(float(x) for x in levels), p["source"],
                             p["status"], f"{TABLE_FILE}@{chosen}")
    if problems:
        raise ConfigError(source, problems)
    return out


@functools.cache
def benchmarks(version: str | None = None) -> dict[str, Benchmark]:
    """The shipped table (``cloud_receiver/factors/benchmarks.toml``), current version."""
    text = resources.files("cloud_receiver.factors").joinpath(TABLE_FILE).read_text("utf-8")
    return parse_table(tomllib.loads(text), f"cloud_receiver/factors/{TABLE_FILE}", version)


def compare(value: float, benchmark: Benchmark) -> Comparison:
    """Classify a unit-product energy ``value`` (in ``benchmark.unit``)."""
    b = benchmark
    if value <= b.benchmark:
        cls, label = "benchmark", "达到标杆水平"
    elif value <= b.baseline:
        cls, label = "between", "优于基准水平、未达标杆水平"
    else:
        cls, label = "below_baseline", "未达基准水平"
    gap = value - b.benchmark
    level = next((i for i, limit in enumerate(b.levels, start=1) if value <= limit), None)
    return Comparison(b, value, cls, label, gap,
                      gap / b.benchmark * 100 if b.benchmark > 0 else None, level)


def compare_product(value: float, product: str, unit: str, *,
                    table: Mapping[str, Benchmark] | None = None) -> Comparison:
    """``compare`` against the table entry ``product``; the units must match exactly."""
    table = benchmarks() if table is None else table
    if product not in table:
        raise NengtanError(f"no benchmark for product {product!r}; known: "
                           + ", ".join(sorted(table)))
    entry = table[product]
    if unit != entry.unit:
        raise NengtanError(f"benchmark {product!r} is in {entry.unit}, the value in {unit}:"
                           " convert it first")
    return compare(value, entry)
