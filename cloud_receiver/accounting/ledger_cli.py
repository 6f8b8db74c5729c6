"""``nengtan receiver ledger list|add|void|baseline|recalculate``: the carbon ledger (ledger.toml).

Thin over ``accounting.ledger``. The entry id is what makes ``add`` safe to re-run: the same id
with the same values changes nothing; the same id with other values is refused, and so is a
copy of an entry under a new id; ``ledger.parse_ledger`` refuses overlapping serial ranges.
A refused edit leaves the file as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from cloud_receiver.accounting._files import read_toml
from cloud_receiver.accounting.ledger import (
    LEDGER_FILE,
    OFFSET_KINDS,
    Ledger,
    _rewrite,
    add_entry,
    load_ledger,
    record_recalculation,
    void_entry,
)
from cloud_receiver.accounting.schemes import fmt
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors
from nengtan.errors import ConfigError

_PLANT = click.option("--plant", "plant_dir", required=True,
                      type=click.Path(file_okay=False, exists=True, path_type=Path),
                      help="The plant data directory holding ledger.toml.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_DAY = click.DateTime(formats=["%Y-%m-%d"])
#: CLI section name -> (ledger.toml section, amount key, unit)
SECTIONS = {"green-electricity": ("green_electricity", "mwh", "MWh"),
            "certificate": ("certificate", "count", "MWh"),
            "offset": ("offset", "tco2", "tCO2")}
_REGISTRY_KEYS = ("registry", "serial_first", "serial_last", "vintage", "retired_on")
_HINT = "Nothing was written. `nengtan receiver ledger list --plant DIR` shows what is recorded."
_AT = re.compile(r"^At '(\w+)\[(\d+)\]\.(\w+)'")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _raw(plant_dir: Path) -> dict[str, Any]:
    path = plant_dir / LEDGER_FILE
    return read_toml(path) or {}


def _totals(ledger: Ledger) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, Decimal]] = {}
    for e in ledger.entries:
        key = "offsets_tco2" if e.section == "offset" else "green_mwh"
        year = out.setdefault(e.for_year, {"green_mwh": Decimal(0), "offsets_tco2": Decimal(0)})
        year[key] += e.amount
    return {y: {k: fmt(v) for k, v in t.items()} for y, t in sorted(out.items())}


@click.group(name="ledger", context_settings=CONTEXT_SETTINGS)
def ledger() -> None:
    """The carbon ledger (ledger.toml of the plant directory): green electricity (绿电), green
    certificates (绿证), offsets (CCER and others) and the baseline with its recalculations.

    \b
    Example:
        nengtan receiver ledger add offset --plant plant/ --id CCER-2025-01 --for-year 2025 \\
            --kind ccer --tco2 150 --registry 全国温室气体自愿减排注册登记系统 \\
            --serial-first CN41-0001 --serial-last CN41-0150 --vintage 2024 \\
            --retired-on 2026-01-20
        nengtan receiver ledger list --plant plant/ --year 2025
    """


@ledger.command(name="list")
@_PLANT
@_JSON
@click.option("--year", type=int, default=None, help="Only entries set against this year.")
@handle_errors
def list_command(plant_dir: Path, as_json: bool, year: int | None) -> None:
    """Show the baseline, its recalculations and the entries, with totals per year.

    \b
    Example:
        nengtan receiver ledger list --plant plant/ --year 2025 --json
    """
    led = load_ledger(plant_dir)
    entries = [e for e in led.entries if year is None or e.for_year == year]
    totals = _totals(Ledger(led.source, led.baselines, tuple(entries)))
    if as_json:
        emit_json({"source": led.source, "baselines": [
            {"year": b.year, "emissions_t": fmt(b.emissions_t),
             "output": None if b.output is None else fmt(b.output),
             "recorded_on": _plain(b.recorded_on), "reason": b.reason} for b in led.baselines],
            "entries": [{"section": e.section, "id": e.id, "for_year": e.for_year,
                         "amount": fmt(e.amount), "unit": "tCO2" if e.section == "offset" else "MWh",
                         "kind": e.kind, "registry": e.registry, "serial_first": e.serial_first,
                         "serial_last": e.serial_last, "vintage": e.vintage,
                         "retired_on": _plain(e.retired_on),
                         "detail": {k: _plain(v) for k, v in e.detail.items()}} for e in entries],
            "voided": [{"section": e.section, "id": e.id, "for_year": e.for_year,
                        "amount": fmt(e.amount), "voided_on": _plain(e.voided_on),
                        "reason": e.void_reason} for e in led.voided
                       if year is None or e.for_year == year],
            "totals": totals})
        return
    click.echo(led.source)
    for b in led.baselines:
        when = f"recalculated {b.recorded_on}: {b.reason}" if b.recorded_on else "original"
        output = "" if b.output is None else f", output {fmt(b.output)}"
        click.echo(f"  baseline {b.year}: {fmt(b.emissions_t)} tCO2{output} ({when})")
    if not led.baselines:
        click.echo("  no baseline (set it with `nengtan receiver ledger baseline`)")
    for e in entries:
        unit = "tCO2" if e.section == "offset" else "MWh"
        serials = f" {e.serial_first}…{e.serial_last}" if e.serial_first else ""
        extra = f" vintage {e.vintage}, retired {e.retired_on}" if e.retired_on else ""
        detail = "".join(f" {k}={_plain(v)}" for k, v in e.detail.items())
        click.echo(f"  {e.section:<17} {e.id:<16} for {e.for_year}  {fmt(e.amount):>10} {unit:<4}"
                   f" {e.kind if e.section == 'offset' else ''} {e.registry}{serials}{extra}{detail}")
    for e in led.voided:
        if year is None or e.for_year == year:
            click.echo(f"  voided {e.voided_on}: {e.section} {e.id} for {e.for_year}, "
                       f"{fmt(e.amount)} ({e.void_reason}); not counted")
    for y, t in totals.items():
        click.echo(f"  total {y}: {t['green_mwh']} MWh 绿电/绿证 claimed, {t['offsets_tco2']} tCO2"
                   " offsets (the scores cap green electricity at the electricity used)")


def _entry(section: str, amount_key: str, options: Mapping[str, Any],
           detail: tuple[str, ...]) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": options["entry_id"], "for_year": options["for_year"]}
    problems = []
    for key in ("mwh", "count", "tco2"):
        if options[key] is not None and key != amount_key:
            problems.append(f"--{key}: does not apply to {section} (it takes --{amount_key})")
    if options[amount_key] is None:
        problems.append(f"--{amount_key}: required for {section}")
    entry[amount_key] = options[amount_key]
    if section == "offset":
        entry["kind"] = options["kind"]
        if options["kind"] is None:
            problems.append(f"--kind: required for offsets (one of {', '.join(sorted(OFFSET_KINDS))})")
    elif options["kind"] is not None:
        problems.append(f"--kind: applies to offsets only (one of {', '.join(sorted(OFFSET_KINDS))})")
    for key in _REGISTRY_KEYS:
        value = options[key]
        if value is not None and section == "green_electricity" and key != "registry":
            problems.append(f"--{key.replace('_', '-')}: applies to certificates and offsets only")
        elif value is not None:
            entry[key] = value.date() if isinstance(value, datetime) else value
    for item in detail:
        name, sep, value = item.partition("=")
        if not sep or not name or name in entry or name in ("id", "for_year", "kind", amount_key,
                                                             *_REGISTRY_KEYS):
            problems.append(f"--detail {item!r}: expected KEY=VALUE with a key of its own "
                            "(e.g. contract=…, project=…)")
        else:
            entry[name] = value
    if problems:
        raise ConfigError("nengtan receiver ledger add", problems, hint="See --help.")
    return {k: v for k, v in entry.items() if v is not None}


def _named(exc: ConfigError, section: str, index: int) -> ConfigError:
    """Name the option behind each problem of the new entry (``At 'offset[2].vintage'`` is
    ``--vintage`` when entry 2 is the one being added)."""
    out = []
    for p in exc.problems:
        m = _AT.match(p)
        if m and m.group(1) == section and int(m.group(2)) == index:
            p = f"--{m.group(3).replace('_', '-')} ({m.group(0)[4:-1]}){p[m.end():]}"
        out.append(p)
    return ConfigError(exc.source, out, hint=exc.hint)


@ledger.command(name="add")
@click.argument("section_name", metavar="SECTION", type=click.Choice(sorted(SECTIONS)))
@_PLANT
@_JSON
@click.option("--id", "entry_id", required=True,
              help="A unique id: the contract, trade or registry transaction number.")
@click.option("--for-year", type=int, required=True, help="The reporting year it is set against.")
@click.option("--mwh", type=float, default=None, help="green-electricity: MWh bought.")
@click.option("--count", type=int, default=None, help="certificate: number of 绿证 (1 MWh each).")
@click.option("--tco2", type=float, default=None, help="offset: tCO2e retired.")
@click.option("--kind", type=click.Choice(sorted(OFFSET_KINDS), case_sensitive=False),
              default=None, help="offset: the kind of credit.")
@click.option("--registry", default=None, help="The registry holding the serials.")
@click.option("--serial-first", default=None, help="First serial of the range.")
@click.option("--serial-last", default=None, help="Last serial (same prefix, numeric tail).")
@click.option("--vintage", type=int, default=None, help="Vintage year of the certificates/credits.")
@click.option("--retired-on", type=_DAY, default=None, help="Day they were retired (YYYY-MM-DD).")
@click.option("--detail", multiple=True, metavar="KEY=VALUE",
              help="Provenance kept with the entry, e.g. contract=… or project=… (repeatable).")
@handle_errors
def add_command(section_name: str, plant_dir: Path, as_json: bool, detail: tuple[str, ...],
                **options: Any) -> None:
    """Add one entry. Every problem is named by its option; nothing is written unless the
    whole ledger stays valid. Re-running the same add changes nothing. ledger.toml is
    rewritten atomically; comments in it are not kept.

    \b
    Example:
        nengtan receiver ledger add green-electricity --plant plant/ --id HN-GE-2025-031 \\
            --for-year 2025 --mwh 1200 --detail contract=河南电力交易中心2025Q1
        nengtan receiver ledger add certificate --plant plant/ --id GEC-2025-A \\
            --for-year 2025 --count 200 --registry 国家绿证核发交易系统 \\
            --serial-first GEC2025000101 --serial-last GEC2025000300 --vintage 2025 \\
            --retired-on 2026-01-20
    """
    section, amount_key, _ = SECTIONS[section_name]
    load_ledger(plant_dir)  # a broken file is reported as it is, before anything else
    entry = _entry(section, amount_key, options, detail)
    raw = _raw(plant_dir)
    outcome, problems = "added", []
    for other in SECTIONS.values():
        for i, old in enumerate(raw.get(other[0], [])):
            same_id = old.get("id") == entry["id"]
            if same_id and other[0] == section and old == entry:
                outcome = "unchanged"
            elif same_id:
                problems.append(f"--id: {entry['id']!r} is already {other[0]}[{i}] with other "
                                "values; a recorded entry is not edited here: use a new id or "
                                "edit ledger.toml")
            # Certificates and offsets have serials, whose overlap the ledger itself refuses.
            elif section == "green_electricity" == other[0] and {
                    k: v for k, v in old.items() if k != "id"} == {
                    k: v for k, v in entry.items() if k != "id"}:
                problems.append(f"--id: everything but the id equals {section}[{i}] "
                                f"({old.get('id')!r}): counting it twice would double count; if"
                                " it is a separate purchase, say how it differs (e.g. --detail"
                                " contract=…)")
    if problems:
        raise ConfigError(str(plant_dir / LEDGER_FILE), problems, hint=_HINT)
    if outcome == "added":
        index = len(raw.get(section, []))
        try:
            add_entry(plant_dir, section, entry)
        except ConfigError as exc:
            raise _named(exc, section, index) from None
    _done(plant_dir, as_json, outcome, {"section": section, **{k: _plain(v)
                                                              for k, v in entry.items()}})


def _done(plant_dir: Path, as_json: bool, outcome: str, what: dict[str, Any]) -> None:
    led = load_ledger(plant_dir)
    if as_json:
        emit_json({"outcome": outcome, "entry": what, "totals": _totals(led)})
        return
    label = what.get("id") or f"baseline {what.get('year') or what.get('recorded_on')}"
    click.echo(f"{label}: {outcome} in {led.source}"
               + ("" if outcome in ("added", "voided")
                  else " (already recorded with the same values)"))


@ledger.command(name="void")
@_PLANT
@_JSON
@click.argument("entry_id")
@click.option("--reason", required=True, help="Why the entry is wrong; kept with it.")
@click.option("--on", "voided_on", type=_DAY, default=None, help="The day of the void (today).")
@handle_errors
def void_command(plant_dir: Path, as_json: bool, entry_id: str, reason: str,
                 voided_on: datetime | None) -> None:
    """Void a wrong entry. It stays in ledger.toml with the day and the reason, is counted
    nowhere, and its serial range is free for the corrected entry (added under a new id). A
    void is final; voiding again with the same reason changes nothing.

    \b
    Example:
        nengtan receiver ledger void GEC-2025-02 --plant plant/ \\
            --reason "entered twice: GEC-2025-01 holds these certificates"
    """
    already = next((e for e in load_ledger(plant_dir).voided if e.id == entry_id), None)
    if already is not None and already.void_reason == reason and (
            voided_on is None or voided_on.date() == already.voided_on):
        _done(plant_dir, as_json, "unchanged", {"id": entry_id, "voided_on": _plain(
            already.voided_on), "reason": reason})
        return
    day = (voided_on or datetime.now()).date()
    void_entry(plant_dir, entry_id, day, reason)
    _done(plant_dir, as_json, "voided", {"id": entry_id, "voided_on": day.isoformat(),
                                         "reason": reason})


@ledger.command(name="baseline")
@_PLANT
@_JSON
@click.option("--year", type=int, required=True, help="The baseline year.")
@click.option("--emissions-t", type=click.FloatRange(min=0, min_open=True), required=True,
              help="tCO2 of the baseline year, within today's boundary.")
@click.option("--output", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Product output of the baseline year, for intensities.")
@handle_errors
def baseline_command(plant_dir: Path, as_json: bool, year: int, emissions_t: float,
                     output: float | None) -> None:
    """Set the original baseline once. A baseline is never edited in place: once set, a
    structural change is recorded with `ledger recalculate`.

    \b
    Example:
        nengtan receiver ledger baseline --plant plant/ --year 2021 --emissions-t 12000
    """
    row: dict[str, Any] = {"year": year, "emissions_t": emissions_t}
    if output is not None:
        row["output"] = output
    old = _raw(plant_dir).get("baseline")
    if old is not None:
        kept = {k: v for k, v in old.items() if k != "recalculation"}
        if kept != row:
            raise ConfigError(str(plant_dir / LEDGER_FILE), [
                f"--year/--emissions-t: the baseline is already set ({kept}); record a change"
                " with `nengtan receiver ledger recalculate`"], hint=_HINT)
        _done(plant_dir, as_json, "unchanged", row)
        return

    def change(doc: dict[str, Any]) -> None:
        doc["baseline"] = row

    _rewrite(plant_dir, change)
    _done(plant_dir, as_json, "added", row)


@ledger.command(name="recalculate")
@_PLANT
@_JSON
@click.option("--recorded-on", type=_DAY, required=True, help="The day it is recorded.")
@click.option("--emissions-t", type=click.FloatRange(min=0, min_open=True), required=True,
              help="The baseline year's tCO2 within the new boundary.")
@click.option("--reason", required=True, help="The structural change (a line acquired, closed…).")
@click.option("--output", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The baseline year's output within the new boundary.")
@handle_errors
def recalculate_command(plant_dir: Path, as_json: bool, recorded_on: datetime,
                        emissions_t: float, reason: str, output: float | None) -> None:
    """Record a baseline recalculation after a structural change; earlier ones are kept, and
    each year's figures use the baseline as it stood then.

    \b
    Example:
        nengtan receiver ledger recalculate --plant plant/ --recorded-on 2025-03-01 \\
            --emissions-t 11800 --reason "line 3 closed"
    """
    day = recorded_on.date()
    row: dict[str, Any] = {"recorded_on": day, "emissions_t": emissions_t, "reason": reason}
    if output is not None:
        row["output"] = output
    for i, old in enumerate(_raw(plant_dir).get("baseline", {}).get("recalculation", [])):
        if old.get("recorded_on") == day:
            if old == row:
                _done(plant_dir, as_json, "unchanged", {**row, "recorded_on": day.isoformat()})
                return
            raise ConfigError(str(plant_dir / LEDGER_FILE), [
                f"--recorded-on: baseline.recalculation[{i}] is already recorded on {day} with "
                "other values; record a correction on a later day"], hint=_HINT)
    record_recalculation(plant_dir, day, emissions_t, reason, output)
    _done(plant_dir, as_json, "added", {**row, "recorded_on": day.isoformat()})
