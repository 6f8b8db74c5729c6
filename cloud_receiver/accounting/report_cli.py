"""What ``nengtan receiver report --month/--year`` does, kept out of ``cli.py`` (a shared file)
so the command there stays a thin wrapper: resolve the factor choice, build, render, write."""

from __future__ import annotations

import time
from pathlib import Path

from cloud_receiver.accounting import render
from cloud_receiver.accounting._files import write_atomic
from cloud_receiver.accounting.factors import Choice
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.accounting.report import Report, annual_report, monthly_report, parse_month
from cloud_receiver.config import CarbonConfig
from cloud_receiver.store import Store
from nengtan.errors import ConfigError

FORMATS = ("text", "csv", "xlsx", "html", "json")


def choice_for(plant_accounting: Choice | None, carbon: CarbonConfig) -> Choice:
    """The plant's [accounting] table wins over the receiver config's [carbon]: the plant
    directory is the reviewed record of which factors its reports use."""
    if plant_accounting is not None:
        return plant_accounting
    return Choice(carbon.regime, carbon.region, carbon.year)


def build(store: Store, plant_dir: Path, carbon: CarbonConfig, *, month: str | None,
          year: int | None, now_ms: int | None = None) -> Report:
    plant = load_plant(plant_dir)
    acc = plant.accounting
    choice = choice_for(None if acc is None else Choice(acc.regime, acc.region, acc.year,
                                                        acc.electricity_basis), carbon)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if month is not None:
        try:
            y, m = parse_month(month)
        except ValueError as exc:
            raise ConfigError("--month", [str(exc)], hint="Give the month as YYYY-MM.") from None
        return monthly_report(store, plant, choice, y, m, now_ms=now)
    assert year is not None
    report = annual_report(store, plant, choice, year, now_ms=now)
    from cloud_receiver.accounting.scores_cli import annual_section  # it imports this module

    report.appendix += annual_section(store, plant_dir, report, year, now)
    return report


def output(report: Report, fmt: str, out: Path | None) -> str | None:
    """Write the rendered report to ``out`` (atomically) or return it for stdout. XLSX is
    binary, so it needs ``out``."""
    if fmt == "xlsx":
        if out is None:
            raise ConfigError("--format xlsx", ["an XLSX workbook needs --out FILE"],
                              hint="Add --out report.xlsx")
        data = render.render_xlsx(report)
    else:
        text = {"text": render.render_text, "csv": render.render_csv, "html": render.render_html,
                "json": render.render_json}[fmt](report)
        if out is None:
            return text
        data = text.encode("utf-8")
    write_atomic(out, data)
    return None
