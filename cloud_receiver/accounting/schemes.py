"""Scores of the quantitative items of the Henan 零碳工厂 and 超级能效工厂 schemes.

The formulas come from the seed notice (豫工信办节〔2024〕196号), not from the standards
themselves, so they are data (``scheme_rules.toml``, overridable per plant) and each score shows
its inputs, the arithmetic and the rule's source and status: an evaluator must be able to check
the number by hand and a corrected formula must be a data change. Arithmetic is decimal, so a
boundary such as "decline of exactly 7 %" cannot fall on the wrong side through binary rounding.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from nengtan.errors import ConfigError

RULES_FILE = "scheme_rules.toml"
Num = Decimal | float | int | str
_ONE = Decimal(1)
_HUNDRED = Decimal(100)

#: The inputs each kind of rule takes (``steps`` depends on its ``measure``).
KIND_INPUTS: dict[str, tuple[str, ...]] = {
    "capped_ratio": ("reduction", "total"),
    "threshold_linear": ("earlier", "later"),
    "offset_ratio": ("offsets", "residual"),
    "benchmark_margin": ("actual", "benchmark"),
    "share_times": ("part", "whole"),
}
_STEP_INPUTS = {"improvement": ("previous", "current"), "share": ("part", "whole")}
_NUMERIC: dict[str, tuple[str, ...]] = {
    "capped_ratio": ("full_at", "max_points"),
    "threshold_linear": ("threshold_pct", "base_points", "points_per_pct", "max_points"),
    "offset_ratio": ("full_at", "min_ratio", "max_points"),
    "benchmark_margin": ("base_points", "points_per_pct", "max_points"),
    "steps": ("max_points",),
    "share_times": ("points_per_share", "max_points"),
}


@dataclass(frozen=True)
class Rule:
    scheme: str  # "zero_carbon" | "super_efficiency"
    item: str
    label: str
    kind: str
    params: Mapping[str, Any]
    source: str
    status: str


@dataclass(frozen=True)
class RuleSet:
    version: str
    origin: str  # the file the rules came from
    rules: Mapping[tuple[str, str], Rule] = field(default_factory=dict)

    def rule(self, scheme: str, item: str) -> Rule:
        try:
            return self.rules[(scheme, item)]
        except KeyError:
            raise ConfigError(self.origin, [f"At '{scheme}.{item}': no such rule"]) from None


@dataclass(frozen=True)
class Score:
    """One scored item with everything needed to recompute it by hand."""

    scheme: str
    item: str
    label: str
    inputs: Mapping[str, Decimal]
    working: str  # the arithmetic, step by step
    points: Decimal
    max_points: Decimal
    source: str
    status: str
    rules_version: str

    def as_dict(self) -> dict[str, object]:
        return {"scheme": self.scheme, "item": self.item, "label": self.label,
                "inputs": {k: fmt(v) for k, v in self.inputs.items()}, "working": self.working,
                "points": fmt(self.points), "max_points": fmt(self.max_points),
                "source": self.source, "status": self.status, "rules_version": self.rules_version}


def dec(value: Num) -> Decimal:
    """A decimal from a number as it is written (``0.1`` is 0.1, not 0.1000000000000000055…)."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number here")
    if isinstance(value, Decimal):
        return value
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not out.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return out


def fmt(value: Decimal) -> str:
    """Plain notation, at most 6 decimals, no trailing zeros (13.50 → 13.5, 1E+1 → 10)."""
    text = format(value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _round(value: Decimal, digits: int, mode: str = ROUND_HALF_UP) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-digits), rounding=mode)


# -- loading ----------------------------------------------------------------------------------

def _rule_problems(where: str, spec: Mapping[str, Any]) -> list[str]:
    kind = spec.get("kind")
    if kind not in (*KIND_INPUTS, "steps"):
        return [f"At '{where}.kind': unknown kind {kind!r} "
                f"(one of {', '.join(sorted((*KIND_INPUTS, 'steps')))})"]
    problems = [f"At '{where}.{k}': required key is missing"
                for k in ("label", "source", "status") if not isinstance(spec.get(k), str)]
    for key in _NUMERIC[kind]:
        try:
            dec(spec[key])
        except (KeyError, TypeError, ValueError):
            problems.append(f"At '{where}.{key}': a number (written as a string) is required")
    if kind == "steps":
        steps = spec.get("steps")
        if not isinstance(steps, list) or not steps:
            problems.append(f"At '{where}.steps': a non-empty list of steps is required")
        else:
            for i, step in enumerate(steps):
                bound = [k for k in ("min_pct", "above_pct") if k in step]
                if len(bound) != 1 or "points" not in step:
                    problems.append(f"At '{where}.steps[{i}]': give points and exactly one of "
                                    "min_pct (≥) or above_pct (>)")
        if spec.get("measure", "improvement") not in _STEP_INPUTS:
            problems.append(f"At '{where}.measure': one of {', '.join(_STEP_INPUTS)}")
    if kind == "share_times" and spec.get("basis", "count") not in ("count", "capacity"):
        problems.append(f"At '{where}.basis': 'count' or 'capacity'")
    return problems


def parse_rules(data: Mapping[str, Any], origin: str) -> RuleSet:
    """Validate parsed TOML; raise ConfigError listing every problem."""
    problems: list[str] = []
    rules: dict[tuple[str, str], Rule] = {}
    version = data.get("version")
    if not isinstance(version, str) or not version:
        problems.append("At 'version': required (a string naming this rule set)")
    for scheme in ("zero_carbon", "super_efficiency"):
        items = data.get(scheme, {})
        if not isinstance(items, dict):
            problems.append(f"At '{scheme}': a table of items is required")
            continue
        for item, spec in items.items():
            where = f"{scheme}.{item}"
            if not isinstance(spec, dict):
                problems.append(f"At '{where}': a table is required")
                continue
            found = _rule_problems(where, spec)
            problems += found
            if not found:
                params = {k: v for k, v in spec.items()
                          if k not in ("label", "kind", "source", "status")}
                rules[(scheme, item)] = Rule(scheme, item, spec["label"], spec["kind"], params,
                                             spec["source"], spec["status"])
    unknown = sorted(set(data) - {"version", "zero_carbon", "super_efficiency"})
    problems += [f"At '{k}': unknown key" for k in unknown]
    if problems:
        raise ConfigError(origin, problems, hint="Compare with cloud_receiver/accounting/"
                          "scheme_rules.toml, the commented default.")
    return RuleSet(str(version), origin, rules)


def load_rules(plant_dir: Path | None = None) -> RuleSet:
    """The plant's ``scheme_rules.toml`` if it has one, else the packaged default."""
    path = plant_dir / RULES_FILE if plant_dir is not None else None
    if path is not None and path.exists():
        origin, text = str(path), path.read_text(encoding="utf-8")
    else:
        origin = f"cloud_receiver/accounting/{RULES_FILE}"
        text = resources.files("cloud_receiver.accounting").joinpath(RULES_FILE).read_text(
            encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(origin, [f"not valid TOML: {exc}"]) from exc
    return parse_rules(data, origin)


# -- scoring ----------------------------------------------------------------------------------

def _ratio(num: Decimal, den: Decimal, name: str, rule: Rule) -> Decimal:
    if den <= 0:
        raise ValueError(f"{rule.scheme}.{rule.item}: {name} must be positive, got {fmt(den)}")
    return num / den


def _capped_ratio(rule: Rule, p: Mapping[str, Decimal], x: Mapping[str, Decimal]) -> tuple[Decimal, str]:
    ratio = _ratio(x["reduction"], x["total"], "total", rule)
    raw = min(ratio / p["full_at"], _ONE) * p["max_points"]
    pts = _round(max(raw, Decimal(0)), int(rule.params.get("digits", 0)))
    return pts, (f"ratio = {fmt(x['reduction'])} ÷ {fmt(x['total'])} = {fmt(ratio)}; "
                 f"min({fmt(ratio)} ÷ {fmt(p['full_at'])}, 1) × {fmt(p['max_points'])} = "
                 f"{fmt(raw)} → rounded half-up = {fmt(pts)}")


def _threshold_linear(rule: Rule, p: Mapping[str, Decimal],
                      x: Mapping[str, Decimal]) -> tuple[Decimal, str]:
    d = _ratio(x["earlier"] - x["later"], x["earlier"], "earlier", rule) * _HUNDRED
    head = f"decline = ({fmt(x['earlier'])} − {fmt(x['later'])}) ÷ {fmt(x['earlier'])} × 100 = {fmt(d)} %"
    if d < p["threshold_pct"]:
        return Decimal(0), f"{head}; below {fmt(p['threshold_pct'])} % → 0"
    extra = (d - p["threshold_pct"]).to_integral_value(rounding=ROUND_FLOOR)
    pts = min(p["base_points"] + extra * p["points_per_pct"], p["max_points"])
    return pts, (f"{head}; {fmt(p['base_points'])} + floor({fmt(d)} − {fmt(p['threshold_pct'])}) × "
                 f"{fmt(p['points_per_pct'])} = {fmt(p['base_points'] + extra * p['points_per_pct'])}"
                 f", max {fmt(p['max_points'])} → {fmt(pts)}")


def _offset_ratio(rule: Rule, p: Mapping[str, Decimal], x: Mapping[str, Decimal]) -> tuple[Decimal, str]:
    r = _ratio(x["offsets"], x["residual"], "residual", rule)
    head = f"ratio = {fmt(x['offsets'])} ÷ {fmt(x['residual'])} = {fmt(r)}"
    if r >= p["full_at"]:
        return p["max_points"], f"{head} ≥ {fmt(p['full_at'])} → {fmt(p['max_points'])}"
    if r < p["min_ratio"]:
        return Decimal(0), f"{head} < {fmt(p['min_ratio'])} → 0"
    pts = _round(r * p["max_points"], int(rule.params.get("digits", 2)))
    return pts, f"{head}; {fmt(r)} × {fmt(p['max_points'])} = {fmt(pts)}"


def _benchmark_margin(rule: Rule, p: Mapping[str, Decimal],
                      x: Mapping[str, Decimal]) -> tuple[Decimal, str]:
    e, b = x["actual"], x["benchmark"]
    if b <= 0:
        raise ValueError(f"{rule.scheme}.{rule.item}: benchmark must be positive, got {fmt(b)} "
                         "(negative benchmarks, e.g. converter steel, need their own rule)")
    if e > b:
        return Decimal(0), f"{fmt(e)} > benchmark {fmt(b)} → 0"
    below = (b - e) / b * _HUNDRED
    whole = below.to_integral_value(rounding=ROUND_FLOOR)
    pts = min(p["base_points"] + whole * p["points_per_pct"], p["max_points"])
    return pts, (f"{fmt(e)} ≤ {fmt(b)}; below by ({fmt(b)} − {fmt(e)}) ÷ {fmt(b)} × 100 = "
                 f"{fmt(below)} %; {fmt(p['base_points'])} + floor({fmt(below)}) × "
                 f"{fmt(p['points_per_pct'])}, max {fmt(p['max_points'])} → {fmt(pts)}")


def _steps(rule: Rule, p: Mapping[str, Decimal], x: Mapping[str, Decimal]) -> tuple[Decimal, str]:
    if rule.params.get("measure", "improvement") == "improvement":
        pct = _ratio(x["previous"] - x["current"], x["previous"], "previous", rule) * _HUNDRED
        head = (f"improvement = ({fmt(x['previous'])} − {fmt(x['current'])}) ÷ "
                f"{fmt(x['previous'])} × 100 = {fmt(pct)} %")
    else:
        pct = _ratio(x["part"], x["whole"], "whole", rule) * _HUNDRED
        head = f"share = {fmt(x['part'])} ÷ {fmt(x['whole'])} × 100 = {fmt(pct)} %"
    for step in rule.params["steps"]:
        pts = dec(step["points"])
        if "above_pct" in step and pct > dec(step["above_pct"]):
            return pts, f"{head} > {fmt(dec(step['above_pct']))} % → {fmt(pts)}"
        if "min_pct" in step and pct >= dec(step["min_pct"]):
            return pts, f"{head} ≥ {fmt(dec(step['min_pct']))} % → {fmt(pts)}"
    return Decimal(0), f"{head}; below every step → 0"


def _share_times(rule: Rule, p: Mapping[str, Decimal], x: Mapping[str, Decimal]) -> tuple[Decimal, str]:
    share = _ratio(x["part"], x["whole"], "whole", rule)
    raw = share * p["points_per_share"]
    pts = min(_round(raw, int(rule.params.get("digits", 2))), p["max_points"])
    return pts, (f"share = {fmt(x['part'])} ÷ {fmt(x['whole'])} = {fmt(share)}; × "
                 f"{fmt(p['points_per_share'])} = {fmt(raw)}, max {fmt(p['max_points'])} → {fmt(pts)}")


_KINDS = {"capped_ratio": _capped_ratio, "threshold_linear": _threshold_linear,
          "offset_ratio": _offset_ratio, "benchmark_margin": _benchmark_margin, "steps": _steps,
          "share_times": _share_times}


def input_names(rule: Rule) -> tuple[str, ...]:
    if rule.kind == "steps":
        return _STEP_INPUTS[str(rule.params.get("measure", "improvement"))]
    return KIND_INPUTS[rule.kind]


def evaluate(rules: RuleSet, scheme: str, item: str, **inputs: Num) -> Score:
    """Score one item from its inputs (named per the rule's kind, see ``input_names``)."""
    rule = rules.rule(scheme, item)
    wanted = input_names(rule)
    if set(inputs) != set(wanted):
        raise ValueError(f"{scheme}.{item} takes inputs {', '.join(wanted)}; "
                         f"got {', '.join(sorted(inputs)) or 'none'}")
    values = {k: dec(inputs[k]) for k in wanted}
    params = {k: dec(rule.params[k]) for k in _NUMERIC[rule.kind]}
    points, working = _KINDS[rule.kind](rule, params, values)
    return Score(scheme, item, rule.label, values, working, points, params["max_points"],
                 rule.source, rule.status, rules.version)
