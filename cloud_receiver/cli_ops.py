"""``nengtan receiver output …`` and ``nengtan receiver metering …``: production output and
intensities, meter balance and coverage. Thin over ``cloud_receiver.accounting``."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from cloud_receiver.accounting.balance import PointAmount, balance, coverage, load_requirements
from cloud_receiver.accounting.energy import interval_energy
from cloud_receiver.accounting.intensity import GRAINS
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.accounting.operations import (
    benchmark_rows,
    load_products,
    month_correlation,
    month_intensities,
)
from cloud_receiver.accounting.output import add_output, parse_output_csv
from cloud_receiver.accounting.shifts import load_shifts
from cloud_receiver.config import load_config
from cloud_receiver.store import open_store
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors

_CONFIG = click.option("--config", "config_path", required=True,
                       type=click.Path(dir_okay=False, path_type=Path),
                       help="The receiver's TOML config (see receiver.sample.toml).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_PLANT = click.option("--plant", "plant_dir", required=True,
                      type=click.Path(file_okay=False, exists=True, path_type=Path),
                      help="The plant data directory (plant.toml, output.csv, ...).")
_MONTH = click.option("--month", required=True, type=click.DateTime(formats=["%Y-%m"]),
                      help="The month, YYYY-MM (production dates in it).")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@click.group(name="output", context_settings=CONTEXT_SETTINGS)
def output() -> None:
    """Production output (output.csv of the plant directory), energy per unit of product, and
    how energy follows output.

    \b
    Example:
        nengtan receiver output import --plant plant/ june-shifts.csv
        nengtan receiver output intensity --config receiver.toml --plant plant/ --month 2025-06
    """


@output.command(name="import")
@_PLANT
@click.argument("csv_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--replace", is_flag=True,
              help="Replace records already present for the same date, node, shift, product.")
@handle_errors
def import_command(plant_dir: Path, csv_file: Path, replace: bool) -> None:
    """Validate a CSV of output (date,node,shift,product,quantity,unit) against the plant model
    and the shift calendar, and merge it into the plant's output.csv (rewritten atomically).
    Nothing is written if any line is wrong; every wrong line is listed.

    \b
    Example:
        nengtan receiver output import --plant plant/ june-shifts.csv
    """
    plant = load_plant(plant_dir)
    new = parse_output_csv(csv_file.read_text(encoding="utf-8-sig"), str(csv_file),
                           load_shifts(plant_dir), nodes=plant.nodes)
    records = add_output(plant_dir, new, replace=replace, nodes=plant.nodes)
    click.echo(f"{csv_file}: {len(new)} record(s) merged; output.csv now holds {len(records)}")


@output.command(name="intensity")
@_CONFIG
@_PLANT
@_MONTH
@_JSON
@click.option("--grain", type=click.Choice(GRAINS), default="month", show_default=True)
@handle_errors
def intensity_command(config_path: Path, plant_dir: Path, month: datetime, as_json: bool,
                      grain: str) -> None:
    """kgce and kgCO2 per unit of product per node, with the benchmark classification of the
    products mapped in products.toml.

    \b
    Example:
        nengtan receiver output intensity --config receiver.toml --plant plant/ \\
            --month 2025-06 --grain shift --json
    """
    config = load_config(config_path)
    plant = load_plant(plant_dir)
    store = open_store(config.storage, create=False)
    try:
        rows = month_intensities(store, plant, month.date(), grain,
                                 until_ms=time.time_ns() // 1_000_000)
    finally:
        store.close()
    compared = benchmark_rows(rows, load_products(plant))
    if as_json:
        emit_json({"month": month.strftime("%Y-%m"), "grain": grain, "rows": [
            dict(asdict(r.intensity), benchmark=r.comparison.as_dict() if r.comparison else None,
                 benchmark_note=r.note) for r in compared]})
        return
    for r in compared:
        u = r.intensity
        bench = (f"  {r.comparison.label} ({r.comparison.benchmark.key}: benchmark"
                 f" {r.comparison.benchmark.benchmark:g}, baseline {r.comparison.benchmark.baseline:g}"
                 f" {r.comparison.benchmark.unit})") if r.comparison else ""
        click.echo(f"{u.period:<14} {u.node:<12} {u.product or '-':<10} output {_fmt(u.output, 3)}"
                   f" {u.unit or ''}  {_fmt(u.kgce, 3)} kgce  {_fmt(u.kgce_per_unit)} kgce/unit"
                   f"  {_fmt(u.kgco2_per_unit)} kgCO2/unit  data {u.completeness:.1f} %"
                   f"{'  ' + u.note if u.note else ''}{bench}")


@output.command(name="correlate")
@_CONFIG
@_PLANT
@_MONTH
@_JSON
@click.option("--node", required=True, help="The line or equipment whose energy is fitted.")
@click.option("--output-node", default=None, help="Whose output (default: --node).")
@handle_errors
def correlate_command(config_path: Path, plant_dir: Path, month: datetime, as_json: bool,
                      node: str, output_node: str | None) -> None:
    """Fit energy = fixed + variable × output over the month's shifts (least squares) and give
    Pearson's r.

    \b
    Example:
        nengtan receiver output correlate --config receiver.toml --plant plant/ \\
            --month 2025-06 --node kiln --output-node line1
    """
    config = load_config(config_path)
    plant = load_plant(plant_dir)
    store = open_store(config.storage, create=False)
    try:
        fit, rows = month_correlation(store, plant, month.date(), node, output_node=output_node)
    finally:
        store.close()
    if as_json:
        emit_json({"fit": asdict(fit), "shifts": [asdict(r) for r in rows]})
        return
    click.echo(f"{node}: energy = {fit.fixed:.3f} kgce per shift + {fit.variable:.4f} kgce per"
               f" unit of output; r = {fit.r:.3f} (r² {fit.r2:.3f}) over {fit.n} shifts")


@click.group(name="metering", context_settings=CONTEXT_SETTINGS)
def metering() -> None:
    """Meter balance (parent vs sub-meters) and GB 17167 metering coverage.

    \b
    Example:
        nengtan receiver metering balance --config receiver.toml --plant plant/ --month 2025-06
        nengtan receiver metering coverage --plant plant/
    """


@metering.command(name="balance")
@_CONFIG
@_PLANT
@_MONTH
@_JSON
@click.option("--max-loss-pct", default=5.0, show_default=True, type=float,
              help="A parent/sub-meter difference beyond this is a deviation.")
@handle_errors
def balance_command(config_path: Path, plant_dir: Path, month: datetime, as_json: bool,
                    max_loss_pct: float) -> None:
    """Each parent meter against the sum of its sub-meters over a month.

    \b
    Example:
        nengtan receiver metering balance --config receiver.toml --plant plant/ --month 2025-06
    """
    config = load_config(config_path)
    plant = load_plant(plant_dir)
    tz = ZoneInfo(plant.timezone)
    first: date = month.date()
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    start = int(datetime(first.year, first.month, 1, tzinfo=tz).timestamp() * 1000)
    end = int(datetime(after.year, after.month, 1, tzinfo=tz).timestamp() * 1000)
    store = open_store(config.storage, create=False)
    try:
        energy = interval_energy(store, plant, start, end, "15m",
                                 until_ms=time.time_ns() // 1_000_000)
    finally:
        store.close()
    rows = balance(plant, {pid: PointAmount(pe.total, pe.completeness)
                           for pid, pe in energy.points.items()}, threshold_pct=max_loss_pct)
    if as_json:
        emit_json({"month": month.strftime("%Y-%m"), "rows": [r.as_dict() for r in rows]})
        return
    for r in rows:
        click.echo(f"{r.parent} ({r.energy_type}, level {r.level}): {_fmt(r.parent_amount, 3)}"
                   f" {r.unit} vs sub-meters {', '.join(r.children)} {_fmt(r.children_amount, 3)}"
                   f" {r.unit}: {r.status}; {r.detail}")


@metering.command(name="coverage")
@_PLANT
@_JSON
@handle_errors
def coverage_command(plant_dir: Path, as_json: bool) -> None:
    """配备率 per energy type and GB 17167 level, against the required percentages.

    \b
    Example:
        nengtan receiver metering coverage --plant plant/ --json
    """
    plant = load_plant(plant_dir)
    rows = coverage(plant, load_requirements(plant))
    if as_json:
        emit_json({"rows": [r.as_dict() for r in rows]})
        return
    for r in rows:
        verdict = "-" if r.ok is None else "meets" if r.ok else "BELOW"
        click.echo(f"{r.energy_type:<12} level {r.level}: {r.metered}/{r.required} = "
                   f"{_fmt(r.ratio_pct, 1)} % (GB 17167: {_fmt(r.required_pct, 0)} %) {verdict}"
                   + (f"; missing: {', '.join(r.missing)}" if r.missing else ""))
    if rows:
        click.echo(f"required percentages: {rows[0].table_version} (status U: check GB 17167-2025)")
