"""The equipment register (``equipment.csv`` in the plant directory) and the grade-1 shares the
超级能效 score asks for (motors, transformers, fans and pumps, special equipment).

A register is a spreadsheet the energy manager already keeps, so it is CSV; every bad row is
reported with its line number at once. A unit whose grade is unknown must be entered as grade 0
rather than left blank: counting it silently as "not grade 1" would hide a gap in the register.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from nengtan.errors import ConfigError

EQUIPMENT_FILE = "equipment.csv"
KINDS = frozenset({"motor", "transformer", "fan_pump", "boiler", "chiller", "compressor",
                   "special"})
COLUMNS = ("id", "name", "kind", "efficiency_grade", "in_service", "rated_kw")
_YES = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


@dataclass(frozen=True)
class Equipment:
    id: str
    name: str
    kind: str
    grade: int  # GB energy-efficiency grade 1..3 (1 best); 0 = not graded / unknown
    in_service: bool
    rated_kw: Decimal | None
    node: str = ""


@dataclass(frozen=True)
class Share:
    """Grade-1 share of one kind of equipment in service, with its counts for the report."""

    kind: str
    basis: str  # "count" | "capacity"
    part: Decimal  # grade-1 units (or their rated kW)
    whole: Decimal  # all units in service (or their rated kW)
    units: tuple[str, ...]  # ids of the units counted in ``whole``


def load_equipment(plant_dir: Path) -> list[Equipment]:
    """Read ``equipment.csv``; an absent file is an empty register."""
    path = plant_dir / EQUIPMENT_FILE
    if not path.exists():
        return []
    problems: list[str] = []
    out: list[Equipment] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(str(path), [f"At line 1: missing column(s) {', '.join(missing)}"])
        for row in reader:
            where = f"At line {reader.line_num}"
            eid = (row["id"] or "").strip()
            kind = (row["kind"] or "").strip()
            grade_text = (row["efficiency_grade"] or "").strip()
            service = _YES.get((row["in_service"] or "").strip().lower())
            kw_text = (row["rated_kw"] or "").strip()
            bad = len(problems)
            if not eid:
                problems.append(f"{where}, id: empty")
            elif eid in seen:
                problems.append(f"{where}, id: {eid!r} is listed twice")
            if kind not in KINDS:
                problems.append(f"{where}, kind: {kind!r} is not one of {', '.join(sorted(KINDS))}")
            if grade_text not in ("0", "1", "2", "3"):
                problems.append(f"{where}, efficiency_grade: {grade_text!r} is not 1, 2, 3 or 0"
                                " (0 = not graded)")
            if service is None:
                problems.append(f"{where}, in_service: {row['in_service']!r} is not yes or no")
            rated: Decimal | None = None
            if kw_text:
                try:
                    rated = Decimal(kw_text)
                    if not rated.is_finite() or rated <= 0:
                        raise ValueError
                except (ArithmeticError, ValueError):
                    problems.append(f"{where}, rated_kw: {kw_text!r} is not a positive number")
            if len(problems) != bad:
                continue
            seen.add(eid)
            out.append(Equipment(eid, (row["name"] or eid).strip(), kind, int(grade_text),
                                 bool(service), rated, (row.get("node") or "").strip()))
    if problems:
        raise ConfigError(str(path), problems, hint="Fix the equipment register rows listed.")
    return out


def grade1_share(register: list[Equipment], kind: str, basis: str = "count") -> Share:
    """Grade-1 units over all in-service units of ``kind``, by count or by rated kW."""
    units = [e for e in register if e.kind == kind and e.in_service]
    if basis == "count":
        part = Decimal(sum(1 for e in units if e.grade == 1))
        whole = Decimal(len(units))
    elif basis == "capacity":
        unrated = [e.id for e in units if e.rated_kw is None]
        if unrated:
            raise ValueError(f"a capacity share of {kind} needs rated_kw for {', '.join(unrated)}")
        part = sum((e.rated_kw for e in units if e.grade == 1 and e.rated_kw), Decimal(0))
        whole = sum((e.rated_kw for e in units if e.rated_kw), Decimal(0))
    else:
        raise ValueError(f"unknown share basis {basis!r} (count or capacity)")
    return Share(kind, basis, part, whole, tuple(e.id for e in units))
