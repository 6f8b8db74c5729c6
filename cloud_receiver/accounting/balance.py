"""Meter balance (a level-1 meter against the sum of its level-2 children) and GB 17167 coverage.

A parent meter that reads more than its sub-meters together shows line losses, an unmetered
consumer or a faulty meter; the loss percentage is the first thing an energy manager checks
before trusting itemised statistics. A balance is only judged on complete data: a child with a
gap would look like a loss, so such rows are ``incomplete`` and never raise a deviation.

Coverage (配备率) counts positions that require an instrument and those that have one, per energy
type and metering level, against the required percentages of GB 17167 (``factors/
gb17167_coverage.toml``, status U). Positions are derived from the plant model where the model
can know them (level 1: the enterprise for every energy type it uses; level 2: every workshop
that uses the type) and declared by the operator in ``metering.toml`` where it cannot (level 3:
main energy-using equipment, e.g. electric equipment of 100 kW or more).
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from cloud_receiver.accounting._files import read_toml
from cloud_receiver.accounting.model import ENERGY_TYPES, LEVELS, Plant
from nengtan.errors import ConfigError

METERING_FILE = "metering.toml"
COVERAGE_TABLE = "gb17167_coverage.toml"


@dataclass(frozen=True)
class PointAmount:
    amount: float  # in the point's energy-type unit, over the period judged
    completeness: float  # percent of the period's expected data present


@dataclass(frozen=True)
class BalanceRow:
    parent: str
    level: int
    energy_type: str
    unit: str
    parent_amount: float | None
    children: tuple[str, ...]
    children_amount: float | None
    loss: float | None  # parent - sum(children)
    loss_pct: float | None  # loss / parent × 100
    threshold_pct: float
    status: str  # ok | deviation | incomplete | no_consumption
    detail: str

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__, children=list(self.children))


def balance(plant: Plant, amounts: Mapping[str, PointAmount], *, threshold_pct: float,
            min_completeness: float = 100.0) -> list[BalanceRow]:
    """One row per metering point that has sub-points (``parent`` links in the model).
    ``amounts`` missing a point means no data for it. ``|loss_pct| > threshold_pct`` is a
    deviation: sub-meters summing to more than their parent is as wrong as a large loss."""
    out = []
    for parent in sorted(plant.points.values(), key=lambda p: (p.level, p.id)):
        children = sorted(p.id for p in plant.points.values() if p.parent == parent.id)
        if not children:
            continue
        involved = [parent.id, *children]
        short = [f"{pid} ({amounts[pid].completeness:g} %)" if pid in amounts else f"{pid} (no data)"
                 for pid in involved
                 if pid not in amounts or amounts[pid].completeness < min_completeness]
        p_amount = amounts[parent.id].amount if parent.id in amounts else None
        c_amount = (sum(amounts[c].amount for c in children)
                    if all(c in amounts for c in children) else None)
        loss = None if p_amount is None or c_amount is None else p_amount - c_amount
        loss_pct = None if loss is None or not p_amount else loss / p_amount * 100
        if short:
            status, detail = "incomplete", ("not judged: data below "
                                            f"{min_completeness:g} % for " + ", ".join(short))
        elif not p_amount:
            status, detail = "no_consumption", "the parent meter recorded nothing"
        else:
            assert loss_pct is not None
            bad = abs(loss_pct) > threshold_pct
            status = "deviation" if bad else "ok"
            detail = (f"loss {loss_pct:.2f} % {'exceeds' if bad else 'within'} ±{threshold_pct:g} %"
                      + (" (sub-meters read more than their parent)" if loss_pct < 0 and bad else ""))
        out.append(BalanceRow(parent.id, parent.level, parent.energy_type, parent.unit, p_amount,
                              tuple(children), c_amount, loss, loss_pct, threshold_pct, status,
                              detail))
    return out


@dataclass(frozen=True)
class Requirement:
    node: str
    energy_type: str
    level: int
    reason: str = ""


def load_requirements(plant: Plant) -> list[Requirement]:
    """The operator's declared positions (``metering.toml``: ``[[required]]`` node, energy_type,
    level, reason); none if the file is absent."""
    path = plant.directory / METERING_FILE
    doc = read_toml(path)
    return [] if doc is None else parse_requirements(doc, str(path), plant)


def parse_requirements(doc: Mapping[str, object], source: str, plant: Plant) -> list[Requirement]:
    raw = doc.get("required", [])
    if not isinstance(raw, list):
        raise ConfigError(source, ["At 'required': expected an array of tables ([[required]])"])
    problems, out = [], []
    for i, item in enumerate(raw):
        where = f"At 'required[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}': expected a table")
            continue
        node, etype, level = item.get("node"), item.get("energy_type"), item.get("level")
        reason = item.get("reason", "")
        bad = len(problems)
        if node not in plant.nodes:
            problems.append(f"{where}.node': {node!r} is not a node of the plant model")
        if etype not in ENERGY_TYPES:
            problems.append(f"{where}.energy_type': {etype!r} is not one of "
                            + ", ".join(ENERGY_TYPES))
        if isinstance(level, bool) or level not in LEVELS:
            problems.append(f"{where}.level': expected 1, 2 or 3, got {level!r}")
        if not isinstance(reason, str):
            problems.append(f"{where}.reason': expected a string")
        if len(problems) == bad:
            out.append(Requirement(str(node), str(etype), int(str(level)), str(reason)))
    if problems:
        raise ConfigError(source, problems)
    return out


@dataclass(frozen=True)
class CoverageTable:
    version: str
    source: str
    status: str
    required: dict[str, tuple[float, ...]]  # energy type -> percent for levels 1, 2, 3


@functools.cache
def coverage_table() -> CoverageTable:
    text = resources.files("cloud_receiver.factors").joinpath(COVERAGE_TABLE).read_text("utf-8")
    doc = tomllib.loads(text)
    return CoverageTable(f"{COVERAGE_TABLE}@{doc['version']}", doc["source"], doc["status"],
                         {k: tuple(float(x) for x in v) for k, v in doc["required"].items()})


@dataclass(frozen=True)
class CoverageRow:
    energy_type: str
    level: int
    required: int  # positions that need an instrument
    metered: int  # of those, positions that have one
    ratio_pct: float | None
    required_pct: float | None  # GB 17167 figure (None: not required at this level)
    ok: bool | None
    missing: tuple[str, ...]  # nodes without an instrument
    table_version: str

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__, missing=list(self.missing))


def coverage(plant: Plant, declared: Sequence[Requirement] = ()) -> list[CoverageRow]:
    """配备率 per energy type and level: metered positions ÷ required positions × 100."""
    table = coverage_table()
    consumers: dict[str, set[str]] = {}  # energy type -> nodes with a point of it in their subtree
    for p in plant.points.values():
        for node in plant.ancestors(p.node):
            consumers.setdefault(p.energy_type, set()).add(node.id)
    on_node = {(p.node, p.energy_type, p.level) for p in plant.points.values()}

    @functools.cache
    def covered(node: str, etype: str, level: int) -> bool:
        # A workshop is metered at level 2 by its own meter or by meters on all of its parts
        # that use the energy type (e.g. one per line).
        if (node, etype, level) in on_node:
            return True
        parts = [c.id for c in plant.children(node) if c.id in consumers.get(etype, set())]
        return bool(parts) and all(covered(c, etype, level) for c in parts)

    positions: set[tuple[str, str, int]] = set()
    for etype, nodes in consumers.items():
        positions.add((plant.enterprise.id, etype, 1))
        positions |= {(n, etype, 2) for n in nodes if plant.nodes[n].kind == "workshop"}
    positions |= {(node, etype, 3) for node, etype, level in on_node if level == 3}
    positions |= {(r.node, r.energy_type, r.level) for r in declared}
    out = []
    for etype in sorted({e for _, e, _ in positions}):
        for level in LEVELS:
            here = sorted(n for n, e, lv in positions if e == etype and lv == level)
            if not here:
                continue
            missing = tuple(n for n in here if not covered(n, etype, level))
            metered = len(here) - len(missing)
            need = table.required.get(etype, ())
            required_pct = need[level - 1] if len(need) >= level else None
            ratio = metered / len(here) * 100
            out.append(CoverageRow(etype, level, len(here), metered, ratio, required_pct,
                                   None if required_pct is None else ratio >= required_pct,
                                   missing, table.version))
    return out

