"""The carbon ledger: green electricity (绿电) and green certificates (绿证), offsets (CCER and
others) with their provenance, and the baseline year with its recalculations.

These are contracts and registry records, entered by people, so they live in ``ledger.toml`` in
the plant directory beside the plant model. What the ledger guards against is double counting:
a certificate or credit serial range claimed twice, a credit counted before it was retired, or
green electricity set against more electricity than the plant used (the notice allows 绿电/绿证
"仅用于抵消企业用电量产生的碳排放"). A baseline is never edited in place: a structural change
(a line acquired or closed) is recorded as a recalculation with its date and reason, and a year's
figures use the baseline as it stood then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import tomli_w

from cloud_receiver.accounting._files import read_toml, write_atomic
from cloud_receiver.accounting.schemes import Num, dec, fmt
from nengtan.errors import ConfigError

LEDGER_FILE = "ledger.toml"
OFFSET_KINDS = frozenset({"ccer", "own_project", "carbon_inclusive", "saving_project",
                          "regional_allowance", "international", "other"})
SECTIONS = ("green_electricity", "certificate", "offset")
_SERIAL = re.compile(r"^(.*?)(\d+)$")
_HINT = "Fix the ledger entries listed; docs/accounting.md describes ledger.toml."


@dataclass(frozen=True)
class Baseline:
    year: int
    emissions_t: Decimal  # tCO2 of the baseline year, within today's boundary
    output: Decimal | None  # product output of the baseline year, for intensities
    recorded_on: date | None  # None for the original; the day a recalculation was recorded
    reason: str


@dataclass(frozen=True)
class Entry:
    """One ledger line: green electricity (MWh), certificates (count = MWh) or an offset (t)."""

    section: str
    id: str
    for_year: int  # the reporting year it is set against
    amount: Decimal  # MWh for green electricity and certificates, tCO2 for offsets
    kind: str  # offset kind; "green_electricity" / "certificate" for the others
    registry: str
    serial_first: str | None
    serial_last: str | None
    vintage: int | None
    retired_on: date | None
    detail: Mapping[str, Any]
    voided_on: date | None = None  # set when a wrong entry was voided; it is then not counted
    void_reason: str = ""


@dataclass(frozen=True)
class Ledger:
    source: str
    baselines: tuple[Baseline, ...]  # the original first, then recalculations in date order
    entries: tuple[Entry, ...]  # the entries that count
    #: Entries voided as wrong: kept in the file for the audit trail, counted nowhere, and
    #: their serial ranges free for the corrected entry.
    voided: tuple[Entry, ...] = ()

    def baseline_on(self, day: date) -> Baseline | None:
        """The baseline as it stood on ``day``: the last recalculation recorded by then."""
        current = None
        for b in self.baselines:
            if b.recorded_on is None or b.recorded_on <= day:
                current = b
        return current


@dataclass(frozen=True)
class Deductions:
    """What the ledger sets against one year's emissions, with the arithmetic shown."""

    year: int
    green_mwh: Decimal  # 绿电 + 绿证 claimed for the year
    usable_mwh: Decimal  # capped at the electricity actually used
    electricity_mwh: Decimal
    grid_factor: Decimal  # tCO2/MWh (= kgCO2/kWh) of the report's regime
    green_t: Decimal
    offsets_t: Decimal
    entries: tuple[str, ...]  # ids counted
    working: str

    @property
    def total_t(self) -> Decimal:
        return self.green_t + self.offsets_t


def _serial_span(first: str, last: str) -> tuple[str, int, int] | None:
    a, b = _SERIAL.match(first), _SERIAL.match(last)
    if not a or not b or a.group(1) != b.group(1):
        return None
    return a.group(1), int(a.group(2)), int(b.group(2))


def _entry(section: str, i: int, raw: Any, problems: list[str]) -> Entry | None:
    where = f"{section}[{i}]"
    if not isinstance(raw, dict):
        problems.append(f"At '{where}': expected a table")
        return None
    before = len(problems)
    amount_key = {"green_electricity": "mwh", "certificate": "count", "offset": "tco2"}[section]

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = raw.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            problems.append(f"At '{where}.{key}': required ({getattr(kind, '__name__', 'number')})")
            return None
        return value

    eid, year = need("id", str), need("for_year", int)
    amount = need(amount_key, (int, float))
    if amount is not None and amount <= 0:
        problems.append(f"At '{where}.{amount_key}': must be positive")
    kind, registry = section, str(raw.get("registry", ""))
    first = last = None
    vintage = retired = None
    if section in ("certificate", "offset"):
        registry = need("registry", str) or ""
        first, last = need("serial_first", str), need("serial_last", str)
        vintage, retired = need("vintage", int), need("retired_on", date)
        if first and last:
            span = _serial_span(first, last)
            if span is None:
                problems.append(f"At '{where}.serial_last': {last!r} and {first!r} are not one"
                                " range (same prefix, numeric tail)")
            elif span[2] < span[1]:
                problems.append(f"At '{where}.serial_last': before serial_first")
            elif amount is not None and Decimal(span[2] - span[1] + 1) != dec(amount):
                problems.append(f"At '{where}.{amount_key}': {amount} but the serial range holds"
                                f" {span[2] - span[1] + 1} units (1 unit = 1 MWh or 1 tCO2e)")
    if section == "offset":
        kind = str(raw.get("kind", "")).lower()
        if kind not in OFFSET_KINDS:
            problems.append(f"At '{where}.kind': {raw.get('kind')!r} is not one of "
                            f"{', '.join(sorted(OFFSET_KINDS))}")
    voided_on, void_reason = raw.get("voided_on"), raw.get("void_reason", "")
    if voided_on is not None and (not isinstance(voided_on, date)
                                  or not isinstance(void_reason, str) or not void_reason):
        problems.append(f"At '{where}.voided_on': a voided entry needs voided_on (a date) and a"
                        " void_reason")
    elif "void_reason" in raw and voided_on is None:
        problems.append(f"At '{where}.void_reason': without voided_on")
    if len(problems) != before:
        return None
    known = {"id", "for_year", amount_key, "registry", "serial_first", "serial_last", "vintage",
             "retired_on", "kind", "voided_on", "void_reason"}
    return Entry(section, eid, year, dec(amount), kind, registry, first, last, vintage, retired,
                 {k: v for k, v in raw.items() if k not in known}, voided_on, str(void_reason))


def _baselines(raw: Any, problems: list[str]) -> tuple[Baseline, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.append("At 'baseline': expected a table")
        return ()
    out: list[Baseline] = []
    year = raw.get("year")
    if not isinstance(year, int) or isinstance(year, bool):
        problems.append("At 'baseline.year': required (the baseline year)")
        year = 0
    rows = [(None, "baseline", raw)] + [
        (i, f"baseline.recalculation[{i}]", r) for i, r in enumerate(raw.get("recalculation", []))]
    for i, where, row in rows:
        if not isinstance(row, dict):
            problems.append(f"At '{where}': expected a table")
            continue
        emissions, output = row.get("emissions_t"), row.get("output")
        if not isinstance(emissions, int | float) or isinstance(emissions, bool) or emissions <= 0:
            problems.append(f"At '{where}.emissions_t': required, a positive number of tCO2")
            continue
        if output is not None and (not isinstance(output, int | float) or output <= 0):
            problems.append(f"At '{where}.output': must be a positive number")
            continue
        recorded, reason = row.get("recorded_on"), row.get("reason", "")
        if i is not None and (not isinstance(recorded, date) or not reason):
            problems.append(f"At '{where}': a recalculation needs recorded_on (a date) and a"
                            " reason (the structural change)")
            continue
        out.append(Baseline(year, dec(emissions), None if output is None else dec(output),
                            recorded if i is not None else None, str(reason)))
    return (out[0], *sorted(out[1:], key=lambda b: b.recorded_on or date.min)) if out else ()


def parse_ledger(doc: Mapping[str, Any], source: str) -> Ledger:
    """Validate a parsed ``ledger.toml``; raise ConfigError listing every problem."""
    problems: list[str] = []
    baselines = _baselines(doc.get("baseline"), problems)
    entries: list[Entry] = []
    for section in SECTIONS:
        raw = doc.get(section, [])
        if not isinstance(raw, list):
            problems.append(f"At '{section}': expected an array of tables ([[{section}]])")
            continue
        entries += [e for i, r in enumerate(raw) if (e := _entry(section, i, r, problems))]
    problems += [f"At '{k}': unknown key" for k in sorted(set(doc) - {"baseline", *SECTIONS})]
    ids: dict[str, str] = {}
    spans: list[tuple[str, str, int, int, str]] = []
    for e in entries:
        if e.id in ids:
            problems.append(f"At '{e.section}' id {e.id!r}: already used in {ids[e.id]}")
        ids[e.id] = e.section
        span = _serial_span(e.serial_first or "", e.serial_last or "")
        if span is None or e.voided_on is not None:
            continue
        for registry, prefix, lo, hi, other in spans:
            if registry == e.registry and prefix == span[0] and lo <= span[2] and span[1] <= hi:
                problems.append(f"At '{e.section}' id {e.id!r}: serials {e.serial_first}..."
                                f"{e.serial_last} overlap those of {other!r} (double counting)")
        spans.append((e.registry, span[0], span[1], span[2], e.id))
    if problems:
        raise ConfigError(source, problems, hint=_HINT)
    return Ledger(source, baselines, tuple(e for e in entries if e.voided_on is None),
                  tuple(e for e in entries if e.voided_on is not None))


def load_ledger(plant_dir: Path) -> Ledger:
    """Read ``ledger.toml``; an absent file is an empty ledger with no baseline."""
    path = plant_dir / LEDGER_FILE
    doc = read_toml(path, hint=_HINT)
    return Ledger(str(path), (), ()) if doc is None else parse_ledger(doc, str(path))


def _rewrite(plant_dir: Path, change: Any) -> Ledger:
    """Apply ``change`` to the parsed file, validate the result and replace the file atomically
    (write a temporary file beside it, fsync, rename), so a crash or a rejected edit leaves the
    old ledger intact. Comments in the file are not kept: tomllib does not return them."""
    path = plant_dir / LEDGER_FILE
    doc: dict[str, Any] = read_toml(path, hint=_HINT) or {}
    change(doc)
    ledger = parse_ledger(doc, str(path))
    write_atomic(path, tomli_w.dumps(doc))
    return ledger


def add_entry(plant_dir: Path, section: str, entry: Mapping[str, Any]) -> Ledger:
    """Append one entry to ``section`` (green_electricity, certificate or offset)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown ledger section {section!r} (one of {', '.join(SECTIONS)})")
    return _rewrite(plant_dir, lambda doc: doc.setdefault(section, []).append(dict(entry)))


def void_entry(plant_dir: Path, entry_id: str, voided_on: date, reason: str) -> Ledger:
    """Void a wrong entry: it stays in ``ledger.toml`` with the date and reason, is counted
    nowhere, and frees its serial range for the corrected entry. Voiding it again with the
    same date and reason changes nothing; an entry is never un-voided or deleted."""
    path = plant_dir / LEDGER_FILE
    if not reason.strip():
        raise ConfigError(str(path), [f"At 'void_reason' of {entry_id!r}: give the reason"],
                          hint=_HINT)

    def change(doc: dict[str, Any]) -> None:
        for section in SECTIONS:
            rows = doc.get(section, [])
            for i, row in enumerate(rows if isinstance(rows, list) else []):
                if not isinstance(row, dict) or row.get("id") != entry_id:
                    continue
                if "voided_on" in row and (row["voided_on"], row.get("void_reason")) != (
                        voided_on, reason):
                    raise ConfigError(str(path), [
                        f"At '{section}[{i}].voided_on': {entry_id!r} was voided on "
                        f"{row['voided_on']} ({row.get('void_reason')}); a void is final"],
                        hint=_HINT)
                row["voided_on"], row["void_reason"] = voided_on, reason
                return
        raise ConfigError(str(path), [f"no ledger entry with id {entry_id!r}"], hint=_HINT)

    return _rewrite(plant_dir, change)


def record_recalculation(plant_dir: Path, recorded_on: date, emissions_t: float, reason: str,
                         output: float | None = None) -> Ledger:
    """Record a baseline recalculation after a structural change, keeping the earlier ones."""
    row: dict[str, Any] = {"recorded_on": recorded_on, "emissions_t": emissions_t,
                           "reason": reason}
    if output is not None:
        row["output"] = output

    def change(doc: dict[str, Any]) -> None:
        if "baseline" not in doc:
            raise ConfigError(str(plant_dir / LEDGER_FILE),
                              ["At 'baseline': set the baseline year before recalculating it"])
        doc["baseline"].setdefault("recalculation", []).append(row)

    return _rewrite(plant_dir, change)


def deductions(ledger: Ledger, year: int, electricity_kwh: Num, grid_factor: Num) -> Deductions:
    """Green electricity and certificates (capped at the electricity used, times the report's
    grid factor in kgCO2/kWh = tCO2/MWh) plus retired offsets set against ``year``."""
    green = [e for e in ledger.entries if e.for_year == year and e.section != "offset"]
    offsets = [e for e in ledger.entries if e.for_year == year and e.section == "offset"]
    green_mwh = sum((e.amount for e in green), Decimal(0))
    used_mwh = dec(electricity_kwh) / 1000
    usable = min(green_mwh, used_mwh)
    factor = dec(grid_factor)
    green_t = usable * factor
    offsets_t = sum((e.amount for e in offsets), Decimal(0))
    working = (f"green = min({fmt(green_mwh)} MWh claimed, {fmt(used_mwh)} MWh used) × "
               f"{fmt(factor)} tCO2/MWh = {fmt(green_t)} t; offsets retired for {year} = "
               f"{' + '.join(fmt(e.amount) for e in offsets) or '0'} = {fmt(offsets_t)} t")
    return Deductions(year, green_mwh, usable, used_mwh, factor, green_t, offsets_t,
                      tuple(e.id for e in green + offsets), working)

