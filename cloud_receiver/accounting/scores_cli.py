"""``nengtan receiver scores``: the 零碳 / 超级能效 scores of one year, fed from the stored data.

Thin over ``scores.build_scores``; also gives the annual report its optional scheme section.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from cloud_receiver.accounting import scores_render
from cloud_receiver.accounting._files import write_atomic
from cloud_receiver.accounting.equipment import EQUIPMENT_FILE
from cloud_receiver.accounting.factors import Choice
from cloud_receiver.accounting.ledger import LEDGER_FILE
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.accounting.report import Report
from cloud_receiver.accounting.report_cli import choice_for
from cloud_receiver.accounting.scheme_inputs import INPUTS_FILE
from cloud_receiver.accounting.scores import SCHEMES, build_scores
from cloud_receiver.config import load_config
from cloud_receiver.store import Store, open_store
from nengtan.clikit import CONTEXT_SETTINGS, handle_errors
from nengtan.errors import NengtanError

#: Files whose presence means the plant keeps scheme data (products.toml alone is for intensity).
SCHEME_FILES = (LEDGER_FILE, INPUTS_FILE, EQUIPMENT_FILE, "scheme_rules.toml")


@click.command(name="scores", context_settings=CONTEXT_SETTINGS)
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The receiver's TOML config (see receiver.sample.toml).")
@click.option("--plant", "plant_dir", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The plant data directory (plant.toml, ledger.toml, scheme_inputs.toml, ...).")
@click.option("--year", required=True, type=click.IntRange(1990, 2100),
              help="The evaluation year (a calendar year, local time of the plant).")
@click.option("--scheme", type=click.Choice(SCHEMES), default=None,
              help="Only this scheme (default: both).")
@click.option("--format", "fmt", type=click.Choice(scores_render.FORMATS), default=None,
              help="Output format (default text; --json = json).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file (atomically) instead of stdout.")
@handle_errors
def scores(config_path: Path, plant_dir: Path, year: int, scheme: str | None, fmt: str | None,
           as_json: bool, out: Path | None) -> None:
    """Score the quantitative items of the 零碳工厂 and 超级能效工厂 schemes for one year.

    Inputs are derived from the stored readings (the year's energy, emissions and
    electricity), output.csv, products.toml and the benchmark table, ledger.toml and
    equipment.csv; what cannot be derived is read from scheme_inputs.toml. Each item prints its
    inputs with where each came from, the formula and the points; an item lacking an input is
    reported "not computable" with what to enter where. The pre-filled 附表2 tables follow.

    \b
    Example:
        nengtan receiver scores --config receiver.toml --plant plant/ --year 2025
        nengtan receiver scores --config receiver.toml --plant plant/ --year 2025 \\
            --scheme zero_carbon --format html --out scores-2025.html
    """
    config = load_config(config_path)
    plant = load_plant(plant_dir)
    acc = plant.accounting
    choice = choice_for(None if acc is None else Choice(acc.regime, acc.region, acc.year,
                                                        acc.electricity_basis), config.carbon)
    store = open_store(config.storage, create=False)
    try:
        sheet = build_scores(store, plant, choice, year, now_ms=time.time_ns() // 1_000_000)
    finally:
        store.close()
    text = scores_render.render(sheet, fmt or ("json" if as_json else "text"), scheme)
    if out is None:
        click.echo(text)
        return
    write_atomic(out, text + "\n")
    click.echo(f"wrote {out}")


def annual_section(store: Store, plant_dir: Path, report: Report, year: int,
                   now_ms: int | None) -> list[scores_render.AppendixTable]:
    """The scheme tables for the annual report, when the plant keeps scheme files or at least
    one item is computable from its data. A wrong scheme file gives one row naming the problem
    instead: the report itself must still build."""
    kept = any((plant_dir / name).exists() for name in SCHEME_FILES)
    try:
        sheet = build_scores(store, load_plant(plant_dir), report.choice, year, report=report,
                             now_ms=now_ms)
    except NengtanError as exc:
        return [(f"Scheme scores {year}", ["problem"], [[f"not computed: {exc}"]])] if kept else []
    if not kept and not sheet.scores():
        return []
    return scores_render.appendix(sheet)
