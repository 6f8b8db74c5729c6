"""The plant model: who uses energy (enterprise → site → workshop → line → equipment) and which
metering point measures it, loaded from the operator's plant data directory.

The model is operator-entered data, so it lives in reviewable files (``plant.toml`` and the
``replacements.toml`` log) rather than in the store, and every problem in them is reported at
once with its file and key path: a half-loaded plant would silently drop a meter from a total.
A metering point binds a node to one stored counter series (gateway, meter, measurement) and
carries what GB 17167 and the statistics need: metering level, energy type (with its unit) and
use category. ``parent`` names the upstream metering point a balance check compares it with.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nengtan.errors import ConfigError
from nengtan.measurements import NOT_ACCOUNTED, ROLLED_UP, VOCABULARY

PLANT_FILE = "plant.toml"
REPLACEMENTS_FILE = "replacements.toml"

#: Hierarchy levels, top first; a node's parent must sit on a higher level.
NODE_KINDS: tuple[str, ...] = ("enterprise", "site", "workshop", "line", "equipment")


@dataclass(frozen=True)
class EnergyType:
    name: str
    unit: str  # the physical unit every amount of this type is accounted in
    label: str  # the Chinese statistical name, for reports


#: The closed list of energy types. Units follow the statistics forms (fuels in t, gas in m³).
ENERGY_TYPES: dict[str, EnergyType] = {e.name: e for e in (
    EnergyType("electricity", "kWh", "电力"),
    EnergyType("natural_gas", "m3", "天然气"),
    EnergyType("steam", "t", "蒸汽"),
    EnergyType("heat", "GJ", "热力"),
    EnergyType("water", "t", "新水"),
    EnergyType("raw_coal", "t", "原煤"),
    EnergyType("coke", "t", "焦炭"),
    EnergyType("diesel", "t", "柴油"),
    EnergyType("gasoline", "t", "汽油"),
    EnergyType("fuel_oil", "t", "燃料油"),
    EnergyType("lpg", "t", "液化石油气"),
    EnergyType("lng", "t", "液化天然气"),
)}

#: Use categories for itemised (分项) statistics.
USE_CATEGORIES: frozenset[str] = frozenset(
    {"production", "auxiliary", "lighting", "hvac", "office", "compressed_air", "other"})

LEVELS = (1, 2, 3)  # GB 17167: 1 = site boundary, 2 = workshop / system, 3 = main equipment


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # one of NODE_KINDS
    name: str
    parent: str | None  # None only for the enterprise


@dataclass(frozen=True)
class MeterPoint:
    id: str
    name: str
    node: str  # the Node whose consumption this point measures
    gateway: str
    meter: str
    measurement: str  # a rolled-up counter of nengtan.measurements
    level: int  # GB 17167 metering level
    energy_type: str  # a key of ENERGY_TYPES
    use: str  # a member of USE_CATEGORIES
    parent: str | None = None  # upstream MeterPoint id, for balance checks
    scale: float = 1.0  # energy-type units per counter unit (e.g. CT/PT ratio)
    rollover_at: float | None = None  # the register's modulus: it wraps to 0 on reaching it

    @property
    def unit(self) -> str:
        return ENERGY_TYPES[self.energy_type].unit


@dataclass(frozen=True)
class Replacement:
    """The meter behind ``point`` was replaced at ``at_ms``: the old one read ``old_final`` when
    it came out, the new one ``new_initial`` when it went in. ``new_meter`` is the new meter's
    id on the gateway when it differs from the old binding."""

    point: str
    at_ms: int
    old_final: float
    new_initial: float
    new_meter: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Accounting:
    """Which factors a report uses unless the command line says otherwise."""

    regime: str  # carbon_market | statistical | product_footprint
    region: str
    year: int
    electricity_basis: str = "calorific_equivalent"  # or "primary_equivalent" (等价值)


@dataclass(frozen=True)
class Plant:
    directory: Path
    timezone: str
    nodes: dict[str, Node]
    points: dict[str, MeterPoint]
    replacements: tuple[Replacement, ...] = ()
    accounting: Accounting | None = None
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # other tables, for other modules

    @property
    def enterprise(self) -> Node:
        return next(n for n in self.nodes.values() if n.kind == "enterprise")

    def children(self, node: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.parent == node]

    def ancestors(self, node: str) -> list[Node]:
        """``node`` itself, then its parent, up to the enterprise."""
        out: list[Node] = []
        current: str | None = node
        while current is not None:
            out.append(self.nodes[current])
            current = self.nodes[current].parent
        return out

    def points_under(self, node: str) -> list[MeterPoint]:
        """Metering points on ``node`` or any node below it."""
        return [p for p in self.points.values()
                if any(a.id == node for a in self.ancestors(p.node))]

    def replacements_of(self, point: str) -> list[Replacement]:
        return sorted((r for r in self.replacements if r.point == point), key=lambda r: r.at_ms)


class _Problems:
    """Collects every problem of one file, so the operator fixes them in one pass."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"At '{where}': {message}")


def _read_toml(path: Path, problems: _Problems) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.add("(file)", "not found")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems.add("(file)", f"not valid TOML: {exc}")
    return {}


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         problems: _Problems, *, required: bool = True, default: Any = None) -> Any:
    if key not in table:
        if required:
            problems.add(f"{where}.{key}", "missing")
        return default
    value = table[key]
    # bool is an int subclass: "level = true" must not pass as level 1.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        problems.add(f"{where}.{key}", f"expected {kind}, got a boolean")
        return default
    if not isinstance(value, kind):
        problems.add(f"{where}.{key}", f"expected {getattr(kind, '__name__', kind)}, "
                     f"got {type(value).__name__} {value!r}")
        return default
    return value


def _nodes(raw: list[Any], problems: _Problems) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for i, item in enumerate(raw):
        where = f"node[{i}]"
        if not isinstance(item, dict):
            problems.add(where, "expected a table")
            continue
        nid = _get(item, "id", str, where, problems)
        kind = _get(item, "kind", str, where, problems)
        name = _get(item, "name", str, where, problems, required=False, default=nid or "")
        parent = _get(item, "parent", str, where, problems, required=False)
        if kind is not None and kind not in NODE_KINDS:
            problems.add(f"{where}.kind", f"{kind!r} is not one of {', '.join(NODE_KINDS)}")
        if nid is None:
            continue
        if nid in nodes:
            problems.add(f"{where}.id", f"{nid!r} is used by an earlier node")
            continue
        nodes[nid] = Node(nid, kind or "", name, parent)
    enterprises = [n for n in nodes.values() if n.kind == "enterprise"]
    if len(enterprises) != 1:
        problems.add("node", f"exactly one node of kind 'enterprise' is needed, found "
                     f"{len(enterprises)}")
    for n in nodes.values():
        if n.kind == "enterprise":
            if n.parent is not None:
                problems.add(f"node[{n.id}].parent", "the enterprise has no parent")
            continue
        if n.parent is None:
            problems.add(f"node[{n.id}].parent", "missing (only the enterprise has none)")
        elif n.parent not in nodes:
            problems.add(f"node[{n.id}].parent", f"no node {n.parent!r}")
        elif n.kind in NODE_KINDS and nodes[n.parent].kind in NODE_KINDS and (
                NODE_KINDS.index(nodes[n.parent].kind) >= NODE_KINDS.index(n.kind)):
            problems.add(f"node[{n.id}].parent",
                         f"a {n.kind} cannot sit under the {nodes[n.parent].kind} {n.parent!r}")
    return nodes


def _number(item: dict[str, Any], key: str, where: str, problems: _Problems,
            default: float | None) -> float | None:
    value = _get(item, key, (int, float), where, problems, required=False, default=default)
    return None if value is None else float(value)


def _points(raw: list[Any], nodes: dict[str, Node], problems: _Problems) -> dict[str, MeterPoint]:
    points: dict[str, MeterPoint] = {}
    bindings: dict[tuple[str, str, str], str] = {}
    for i, item in enumerate(raw):
        where = f"point[{i}]"
        if not isinstance(item, dict):
            problems.add(where, "expected a table")
            continue
        before = len(problems.items)
        pid = _get(item, "id", str, where, problems)
        node = _get(item, "node", str, where, problems)
        gateway = _get(item, "gateway", str, where, problems)
        meter = _get(item, "meter", str, where, problems)
        measurement = _get(item, "measurement", str, where, problems, required=False,
                           default="active_energy_import")
        level = _get(item, "level", int, where, problems)
        etype = _get(item, "energy_type", str, where, problems)
        use = _get(item, "use", str, where, problems)
        parent = _get(item, "parent", str, where, problems, required=False)
        scale = _number(item, "scale", where, problems, 1.0)
        rollover = _number(item, "rollover_at", where, problems, None)
        if node is not None and node not in nodes:
            problems.add(f"{where}.node", f"no node {node!r}")
        if measurement is not None and measurement not in ROLLED_UP:
            problems.add(f"{where}.measurement", f"{measurement!r} is not a whole-meter counter; "
                         f"use one of {', '.join(sorted(ROLLED_UP))}")
        elif measurement in NOT_ACCOUNTED:
            problems.add(f"{where}.measurement", f"{measurement!r} is a volume at line conditions,"
                         " not an amount of gas: bind the corrector's gas_volume_std")
        if level is not None and level not in LEVELS:
            problems.add(f"{where}.level", f"{level} is not a GB 17167 level (1, 2 or 3)")
        if etype is not None and etype not in ENERGY_TYPES:
            problems.add(f"{where}.energy_type",
                         f"{etype!r} is not one of {', '.join(ENERGY_TYPES)}")
        elif (etype is not None and measurement in VOCABULARY and "scale" not in item
              and VOCABULARY[measurement].unit != ENERGY_TYPES[etype].unit):
            problems.add(f"{where}.scale", f"{measurement} counts {VOCABULARY[measurement].unit}"
                         f" but {etype} is accounted in {ENERGY_TYPES[etype].unit}: give the"
                         f" scale (units of {etype} per counter unit)")
        if use is not None and use not in USE_CATEGORIES:
            problems.add(f"{where}.use", f"{use!r} is not one of {', '.join(sorted(USE_CATEGORIES))}")
        if scale is not None and scale <= 0:
            problems.add(f"{where}.scale", "must be positive")
        if rollover is not None and rollover <= 0:
            problems.add(f"{where}.rollover_at", "must be positive")
        if pid is not None and pid in points:
            problems.add(f"{where}.id", f"{pid!r} is used by an earlier point")
            continue
        key = (gateway, meter, measurement)
        if None not in key and key in bindings:
            problems.add(where, f"{'/'.join(key)} is already bound to point {bindings[key]!r}:"
                         " one series counted twice would double the total")
        if len(problems.items) != before or pid is None:
            continue
        bindings[key] = pid
        points[pid] = MeterPoint(pid, _get(item, "name", str, where, problems, required=False,
                                           default=pid), node, gateway, meter, measurement,
                                 level, etype, use, parent, scale or 1.0, rollover)
    for p in points.values():
        if p.parent is not None and p.parent not in points:
            problems.add(f"point[{p.id}].parent", f"no metering point {p.parent!r}")
        elif p.parent is not None and points[p.parent].energy_type != p.energy_type:
            problems.add(f"point[{p.id}].parent", "the parent meters another energy type")
    return points


def _accounting(raw: Any, problems: _Problems) -> Accounting | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.add("accounting", "expected a table")
        return None
    regime = _get(raw, "regime", str, "accounting", problems)
    region = _get(raw, "region", str, "accounting", problems)
    year = _get(raw, "year", int, "accounting", problems)
    basis = _get(raw, "electricity_basis", str, "accounting", problems, required=False,
                 default="calorific_equivalent")
    if basis not in ("calorific_equivalent", "primary_equivalent"):
        problems.add("accounting.electricity_basis",
                     f"{basis!r} is not calorific_equivalent or primary_equivalent")
    if regime is None or region is None or year is None:
        return None
    return Accounting(regime, region, year, basis)


def _replacements(raw: list[Any], points: dict[str, MeterPoint],
                  problems: _Problems) -> tuple[Replacement, ...]:
    out: list[Replacement] = []
    for i, item in enumerate(raw):
        where = f"replacement[{i}]"
        if not isinstance(item, dict):
            problems.add(where, "expected a table")
            continue
        point = _get(item, "point", str, where, problems)
        at = _get(item, "at", datetime, where, problems)
        old_final = _number(item, "old_final", where, problems, None)
        new_initial = _number(item, "new_initial", where, problems, None)
        new_meter = _get(item, "new_meter", str, where, problems, required=False)
        note = _get(item, "note", str, where, problems, required=False, default="")
        if "old_final" not in item:
            problems.add(f"{where}.old_final", "missing")
        if "new_initial" not in item:
            problems.add(f"{where}.new_initial", "missing")
        if point is not None and point not in points:
            problems.add(f"{where}.point", f"no metering point {point!r}")
        if isinstance(at, datetime) and at.tzinfo is None:
            problems.add(f"{where}.at", "give a UTC offset (e.g. 2025-06-15T10:00:00+08:00):"
                         " a local time without one is ambiguous")
            continue
        if None in (point, at, old_final, new_initial):
            continue
        assert old_final is not None and new_initial is not None
        out.append(Replacement(point, int(at.timestamp() * 1000), old_final, new_initial,
                               new_meter, note))
    return tuple(out)


def load_plant(directory: Path | str) -> Plant:
    """Read ``plant.toml`` (and ``replacements.toml`` if present) from ``directory``; raise one
    ConfigError per file listing every problem in it."""
    directory = Path(directory)
    problems = _Problems()
    doc = _read_toml(directory / PLANT_FILE, problems)
    rpath = directory / REPLACEMENTS_FILE
    return _validate(doc, directory, problems,
                     lambda rproblems: _read_toml(rpath, rproblems) if rpath.exists() else None)


def validate_plant_doc(doc: Mapping[str, Any], directory: Path | str,
                       replacements_doc: Mapping[str, Any] | None = None) -> Plant:
    """The checks of ``load_plant`` on content already parsed (by ``tomllib``), e.g. an edit
    not yet written; ``replacements_doc`` None means there is no ``replacements.toml``. Errors
    name the files of ``directory`` exactly as ``load_plant`` would."""
    return _validate(doc, Path(directory), _Problems(), lambda _problems: replacements_doc)


def _validate(doc: Mapping[str, Any], directory: Path, problems: _Problems,
              read_replacements: Callable[[_Problems], Mapping[str, Any] | None]) -> Plant:
    meta = doc.get("plant", {})
    if not isinstance(meta, dict):
        problems.add("plant", "expected a table")
        meta = {}
    timezone = _get(meta, "timezone", str, "plant", problems, required=False,
                    default="Asia/Shanghai")
    name = _get(meta, "name", str, "plant", problems, required=False, default="")
    for key in ("node", "point"):
        if not isinstance(doc.get(key, []), list):
            problems.add(key, "expected an array of tables ([[" + key + "]])")
    nodes = _nodes(doc.get("node", []) if isinstance(doc.get("node"), list) else [], problems)
    points = _points(doc.get("point", []) if isinstance(doc.get("point"), list) else [],
                     nodes, problems)
    accounting = _accounting(doc.get("accounting"), problems)
    if problems.items:
        raise ConfigError(str(directory / PLANT_FILE), problems.items,
                          hint="Fix the plant model; docs/accounting.md describes the format.")
    replacements: tuple[Replacement, ...] = ()
    rpath = directory / REPLACEMENTS_FILE
    rproblems = _Problems()
    rdoc = read_replacements(rproblems)
    if rdoc is not None:
        raw = rdoc.get("replacement", [])
        if not isinstance(raw, list):
            rproblems.add("replacement", "expected an array of tables ([[replacement]])")
            raw = []
        replacements = _replacements(raw, points, rproblems)
        if rproblems.items:
            raise ConfigError(str(rpath), rproblems.items,
                              hint="Fix the replacement log; docs/accounting.md describes it.")
    extra = {k: v for k, v in doc.items() if k not in ("plant", "node", "point", "accounting")}
    return Plant(directory, timezone, nodes, points, replacements, accounting, name, extra)
