"""The scheme scores of one year, fed from the stored data and the plant files.

Every input of every quantitative item of both schemes is derived where the receiver can
(``score_figures``: the year's report, output.csv, the benchmark table, the ledger, the
equipment register), entered in ``scheme_inputs.toml`` where it cannot, and otherwise reported
missing: an item lacking an input is "not computable", never scored on a stand-in. The score
itself is ``schemes.evaluate`` of the rule set in force, so the arithmetic and the rule's source
travel with it; the pre-filled 附表2 tables are those of ``evaluation``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cloud_receiver.accounting import evaluation
from cloud_receiver.accounting.evaluation import Table
from cloud_receiver.accounting.factors import Choice
from cloud_receiver.accounting.ledger import Deductions
from cloud_receiver.accounting.model import Plant
from cloud_receiver.accounting.report import Report, month_bounds
from cloud_receiver.accounting.scheme_inputs import SchemeInputs, load_scheme_inputs
from cloud_receiver.accounting.score_figures import (
    Figures,
    Input,
    derived,
    has_readings,
    missing,
    year_report,
)
from cloud_receiver.accounting.schemes import (
    Rule,
    RuleSet,
    Score,
    evaluate,
    fmt,
    input_names,
    load_rules,
)
from cloud_receiver.store import Store

SCHEMES = ("zero_carbon", "super_efficiency")


@dataclass(frozen=True)
class ItemScore:
    scheme: str
    item: str
    label: str
    inputs: tuple[Input, ...]
    score: Score | None  # None: not computable, ``note`` says why
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"scheme": self.scheme, "item": self.item, "label": self.label,
                "computable": self.score is not None,
                "inputs": [i.as_dict() for i in self.inputs],
                "score": None if self.score is None else self.score.as_dict(), "note": self.note}


@dataclass(frozen=True)
class ScoreSheet:
    year: int
    rules_version: str
    rules_origin: str
    inputs_file: str
    items: tuple[ItemScore, ...]
    deductions: Deductions | None
    warnings: tuple[str, ...]

    def of(self, scheme: str | None) -> tuple[ItemScore, ...]:
        return tuple(i for i in self.items if scheme is None or i.scheme == scheme)

    def scores(self) -> dict[tuple[str, str], Score]:
        return {(i.scheme, i.item): i.score for i in self.items if i.score is not None}

    def tables(self, scheme: str | None = None) -> list[Table]:
        """The pre-filled 附表2 tables; a quantitative row left empty says what is missing."""
        # The layouts are evaluation's own, so each row can be matched with its item.
        builders: list[tuple[str, Callable[..., Table], tuple[Layout, ...]]] = [
            ("zero_carbon", evaluation.zero_carbon_table, evaluation._ZERO_CARBON),
            ("super_efficiency", evaluation.super_efficiency_table,
             evaluation._SUPER_EFFICIENCY)]
        by_key = {(i.scheme, i.item): i for i in self.items}
        out = []
        for name, build, layout in builders:
            if scheme in (None, name):
                out.append(_annotate(build(self.scores(), self.year), layout, by_key))
        return out

    def as_dict(self, scheme: str | None = None) -> dict[str, object]:
        d = self.deductions
        return {"year": self.year, "rules_version": self.rules_version,
                "rules_origin": self.rules_origin, "inputs_file": self.inputs_file,
                "warnings": list(self.warnings),
                "deductions": None if d is None else {
                    "green_mwh": fmt(d.green_mwh), "usable_mwh": fmt(d.usable_mwh),
                    "green_t": fmt(d.green_t), "offsets_t": fmt(d.offsets_t),
                    "total_t": fmt(d.total_t), "entries": list(d.entries), "working": d.working},
                "items": [i.as_dict() for i in self.of(scheme)],
                "tables": [{"title": t.title, "columns": list(t.columns),
                            "rows": [list(r) for r in t.rows]} for t in self.tables(scheme)]}


Layout = tuple[str, str, str, str, str, tuple[str, str] | None]


def _annotate(table: Table, layout: tuple[Layout, ...],
              items: Mapping[tuple[str, str], ItemScore]) -> Table:
    # evaluation builds one row per layout entry, in order, so zip pairs each row with its item.
    rows = []
    for row, spec in zip(table.rows, layout, strict=True):
        item = items.get(spec[5]) if spec[5] else None
        if item is not None and item.score is None:
            row = (*row[:4], f"{row[4]}：{item.note.removeprefix('not computable: ')}",
                   *row[5:])
        rows.append(row)
    return Table(table.title, table.columns, tuple(rows))


def _derivations(rule: Rule, f: Figures) -> dict[str, Input]:
    """What this module knows how to derive for ``rule``, by the rule's input names."""
    key = (rule.scheme, rule.item)
    if key == ("zero_carbon", "self_reduction"):
        base, now = f.baseline_t(), f.emissions_t
        if base.value is None or now.value is None:
            gap = base if base.value is None else now
            return {"reduction": missing("reduction", gap.provenance),
                    "total": base.renamed("total")}
        value = base.value - now.value
        return {"reduction": derived("reduction", value, (
                    f"baseline {fmt(base.value)} − emissions {fmt(now.value)} = {fmt(value)} tCO2"
                    f"; baseline: {base.provenance}; emissions: {now.provenance}")),
                "total": base.renamed("total")}
    if key == ("zero_carbon", "intensity_decline"):
        return {"earlier": f.intensity(f.year - 3).renamed("earlier"),
                "later": f.intensity(f.year).renamed("later")}
    if key == ("zero_carbon", "offset_ratio"):
        return {"offsets": f.offsets_t.renamed("offsets"),
                "residual": f.emissions_t.renamed("residual")}
    if key == ("super_efficiency", "unit_product_energy"):
        return {"actual": f.unit_energy().renamed("actual"), "benchmark": f.benchmark()}
    if key == ("super_efficiency", "renewable_share"):
        return {"part": f.renewable_tce.renamed("part"), "whole": f.energy_tce.renamed("whole")}
    if rule.kind == "share_times" and "equipment_kind" in rule.params:
        return f.equipment_share(str(rule.params["equipment_kind"]),
                                 str(rule.params.get("basis", "count")))
    return {}


def _inputs(rule: Rule, f: Figures, entered: SchemeInputs) -> tuple[Input, ...]:
    found = _derivations(rule, f)
    given = entered.entered(f.year, rule.scheme, rule.item)
    source = entered.sources.get((f.year, rule.scheme, rule.item))
    out = []
    for name in input_names(rule):
        d = found.get(name)
        if name in given:
            text = f"entered in {entered.where(f.year, rule.scheme, rule.item, name)}"
            if source:
                text += f" (source: {source})"
            if d is not None and d.value is not None:
                text += f"; replaces the derived {fmt(d.value)} ({d.provenance})"
            out.append(Input(name, given[name], "entered", text))
        elif d is not None:
            out.append(d.renamed(name))
        else:
            out.append(missing(name, "not derivable from stored data"))
    return tuple(out)


def _item(rule: Rule, f: Figures, entered: SchemeInputs, rules: RuleSet) -> ItemScore:
    inputs = _inputs(rule, f, entered)
    gaps = [i for i in inputs if i.value is None]
    if gaps:
        why: dict[str, list[str]] = {}
        for i in gaps:
            why.setdefault(i.provenance, []).append(i.name)
        where = entered.where(f.year, rule.scheme, rule.item)
        note = ("not computable: missing " + "; ".join(f"{', '.join(names)} ({text})"
                                                      for text, names in why.items())
                + f" — enter {'it' if len(gaps) == 1 else 'them'} in {where}")
        return ItemScore(rule.scheme, rule.item, rule.label, inputs, None, note)
    try:
        score = evaluate(rules, rule.scheme, rule.item,
                         **{i.name: i.value for i in inputs if i.value is not None})
    except ValueError as exc:
        return ItemScore(rule.scheme, rule.item, rule.label, inputs, None,
                         f"not computable: {exc}")
    return ItemScore(rule.scheme, rule.item, rule.label, inputs, score)


def build_scores(store: Store, plant: Plant, choice: Choice, year: int, *,
                 report: Report | None = None, now_ms: int | None = None) -> ScoreSheet:
    """Score every item of both schemes for ``year``. ``report`` is the year's report when the
    caller has one (the annual report), so the figures are exactly those it prints."""
    rules = load_rules(plant.directory)
    entered = load_scheme_inputs(plant.directory, rules, nodes=plant.nodes)
    if report is None:
        report = year_report(store, plant, choice, year, now_ms=now_ms)
    f = Figures(store, plant, choice, year, report, entered, now_ms=now_ms)
    order = {s: i for i, s in enumerate(SCHEMES)}
    ranked = sorted(rules.rules.values(), key=lambda r: order.get(r.scheme, len(order)))
    items = tuple(_item(rule, f, entered, rules) for rule in ranked)
    return ScoreSheet(year, rules.version, rules.origin, str(entered.path), items,
                      f.deductions[0], tuple(_warnings(plant, report, year, now_ms)))


def _warnings(plant: Plant, report: Report, year: int, now_ms: int | None) -> list[str]:
    out = []
    if not has_readings(report):
        out.append(f"no stored readings for {year}: energy and emissions are missing")
    elif report.completeness < 100:
        out.append(f"the {year} report's lowest point completeness is "
                   f"{report.completeness:.1f} %: derived figures cover only the data stored")
    tz = ZoneInfo(plant.timezone)
    end = month_bounds(year, 12, tz)[1]
    if now_ms is not None and now_ms < end:
        day = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(tz).date()
        out.append(f"{year} is not over: figures run to {day}, and the schemes score whole years")
    return out
