"""``scheme_inputs.toml``: the scheme-score inputs the receiver cannot derive from stored data.

A process-efficiency improvement figure, an intensity from before the plant was metered, or a
verified emissions figure that includes process emissions are known only to the plant, so they
are entered here, per evaluation year and score item, with the evidence they come from. An
entered input replaces a derived one and the score says so; nothing else in the file is used.

    [unit_product]                 # optional: what unit-product energy is measured on
    product = "clinker"            # a product of output.csv (default: the year's only product)
    node = "kiln-line"             # whose energy counts (default: the enterprise)

    [2025.super_efficiency.process_improvement]
    previous = "118.2"             # numbers; a string keeps an exact decimal
    current = "106.0"
    source = "2025 节能诊断报告 表 4-2"   # optional: the evidence, shown beside the input
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from cloud_receiver.accounting._files import read_toml
from cloud_receiver.accounting.schemes import RuleSet, dec, input_names
from nengtan.errors import ConfigError

INPUTS_FILE = "scheme_inputs.toml"
SCHEMES = ("zero_carbon", "super_efficiency")
_HINT = "Fix the keys listed; docs/accounting-operations.md (Scheme scores) shows the format."

ItemKey = tuple[int, str, str]  # (year, scheme, item)


@dataclass(frozen=True)
class SchemeInputs:
    path: Path
    product: str | None = None
    node: str | None = None
    values: Mapping[ItemKey, Mapping[str, Decimal]] = field(default_factory=dict)
    sources: Mapping[ItemKey, str] = field(default_factory=dict)

    def entered(self, year: int, scheme: str, item: str) -> Mapping[str, Decimal]:
        return self.values.get((year, scheme, item), {})

    def where(self, year: int, scheme: str, item: str, name: str | None = None) -> str:
        """The key path an input is (or would be) entered at, for messages."""
        return f"{self.path.name} at '{year}.{scheme}.{item}" + (f".{name}'" if name else "'")


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return dec(value)
    except (TypeError, ValueError):
        return None


def _unit_product(raw: Any, nodes: set[str] | None, problems: list[str]) -> tuple[str | None,
                                                                               str | None]:
    if not isinstance(raw, dict):
        problems.append("At 'unit_product': expected a table")
        return None, None
    out: list[str | None] = []
    for key in ("product", "node"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"At 'unit_product.{key}': expected a non-empty string")
            value = None
        out.append(value)
    if out[1] is not None and nodes is not None and out[1] not in nodes:
        problems.append(f"At 'unit_product.node': {out[1]!r} is not a node of plant.toml")
    problems += [f"At 'unit_product.{k}': unknown key (product, node)"
                 for k in sorted(set(raw) - {"product", "node"})]
    return out[0], out[1]


def parse_scheme_inputs(doc: Mapping[str, Any], path: Path, rules: RuleSet, *,
                        nodes: Iterable[str] | None = None) -> SchemeInputs:
    """Validate a parsed file against the rule set (items and their input names); raise
    ConfigError listing every problem with its key path."""
    problems: list[str] = []
    product = node = None
    if "unit_product" in doc:
        product, node = _unit_product(doc["unit_product"], None if nodes is None else set(nodes),
                                      problems)
    values: dict[ItemKey, dict[str, Decimal]] = {}
    sources: dict[ItemKey, str] = {}
    for year_key, schemes in doc.items():
        if year_key == "unit_product":
            continue
        if not (year_key.isdigit() and len(year_key) == 4):
            problems.append(f"At '{year_key}': unknown key (a year such as [2025.…] or"
                            " [unit_product])")
            continue
        if not isinstance(schemes, dict):
            problems.append(f"At '{year_key}': expected a table of schemes")
            continue
        for scheme, items in schemes.items():
            where = f"{year_key}.{scheme}"
            if scheme not in SCHEMES or not isinstance(items, dict):
                problems.append(f"At '{where}': expected a table named one of {', '.join(SCHEMES)}")
                continue
            for item, given in items.items():
                _item(int(year_key), scheme, item, given, rules, values, sources, problems)
    if problems:
        raise ConfigError(str(path), problems, hint=_HINT)
    return SchemeInputs(path, product, node, values, sources)


def _item(year: int, scheme: str, item: str, given: Any, rules: RuleSet,
          values: dict[ItemKey, dict[str, Decimal]], sources: dict[ItemKey, str],
          problems: list[str]) -> None:
    where = f"{year}.{scheme}.{item}"
    rule = rules.rules.get((scheme, item))
    if rule is None:
        known = ", ".join(sorted(i for s, i in rules.rules if s == scheme))
        problems.append(f"At '{where}': no such score item in rules {rules.version} ({known})")
        return
    if not isinstance(given, dict):
        problems.append(f"At '{where}': expected a table of inputs")
        return
    wanted = input_names(rule)
    key = (year, scheme, item)
    for name, raw in given.items():
        if name == "source":
            if isinstance(raw, str) and raw:
                sources[key] = raw
            else:
                problems.append(f"At '{where}.source': expected a non-empty string")
        elif name not in wanted:
            problems.append(f"At '{where}.{name}': unknown input ({item} takes "
                            f"{', '.join(wanted)}, and source)")
        elif (number := _number(raw)) is None:
            problems.append(f"At '{where}.{name}': expected a number, got {raw!r}")
        else:
            values.setdefault(key, {})[name] = number


def load_scheme_inputs(plant_dir: Path, rules: RuleSet, *,
                       nodes: Iterable[str] | None = None) -> SchemeInputs:
    """Read ``scheme_inputs.toml``; an absent file enters nothing."""
    path = plant_dir / INPUTS_FILE
    doc = read_toml(path, hint=_HINT)
    if doc is None:
        return SchemeInputs(path)
    return parse_scheme_inputs(doc, path, rules, nodes=nodes)
