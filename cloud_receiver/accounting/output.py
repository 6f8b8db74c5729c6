"""Production output per node (enterprise, line, …), production date and shift.

The Henan centres must tie energy and carbon to output per enterprise, line and shift. Output is
operator-entered, so it lives in the plant data directory (``output.csv``) where it can be
reviewed and versioned; this module reads and validates it (every problem at once, each naming
file, line and column) and rewrites it atomically for the API (``add_output``). Shifts are those
of the plant's calendar (``shifts.py``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cloud_receiver.accounting._files import write_atomic
from cloud_receiver.accounting.shifts import ShiftCalendar, load_shifts
from nengtan.errors import ConfigError

OUTPUT_FILE = "output.csv"
OUTPUT_COLUMNS = ("date", "node", "shift", "product", "quantity", "unit")


@dataclass(frozen=True)
class OutputRecord:
    """Output of one product by one plant node on one production date, for one shift or (with
    ``shift`` None) for the whole day."""

    day: date
    node: str
    shift: str | None
    product: str
    quantity: float
    unit: str


def parse_output_csv(text: str, source: str, calendar: ShiftCalendar, *,
                     nodes: Iterable[str] | None = None) -> list[OutputRecord]:
    """Records of an ``output.csv``; ``nodes`` (the plant's node ids), if given, are the only
    nodes allowed. A (date, node, product) given both per shift and for the whole day, or twice,
    is an error: either would count output twice."""
    known = None if nodes is None else set(nodes)
    problems: list[str] = []
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in OUTPUT_COLUMNS if c not in header]
    if missing:
        raise ConfigError(source, [f"line 1: missing column(s) {', '.join(missing)}; expected "
                                   + ",".join(OUTPUT_COLUMNS)])
    shift_names = set(calendar.names())
    records: list[OutputRecord] = []
    seen: dict[tuple[date, str, str], dict[str | None, int]] = {}
    for row in reader:
        line = reader.line_num
        at = f"line {line}"
        day_text = (row.get("date") or "").strip()
        node = (row.get("node") or "").strip()
        shift = (row.get("shift") or "").strip() or None
        product = (row.get("product") or "").strip()
        unit = (row.get("unit") or "").strip()
        qty_text = (row.get("quantity") or "").strip()
        bad = len(problems)
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            problems.append(f"{at}, column 'date': expected YYYY-MM-DD, got {day_text!r}")
        if not node:
            problems.append(f"{at}, column 'node': empty")
        elif known is not None and node not in known:
            problems.append(f"{at}, column 'node': {node!r} is not a node of the plant model")
        if shift is not None and shift not in shift_names:
            problems.append(f"{at}, column 'shift': {shift!r} is not in the shift calendar"
                            f" ({', '.join(calendar.names())}); leave it empty for a whole day")
        for column, value in (("product", product), ("unit", unit)):
            if not value:
                problems.append(f"{at}, column '{column}': empty")
        try:
            quantity = float(qty_text)
            if not math.isfinite(quantity) or quantity < 0:
                raise ValueError
        except ValueError:
            problems.append(f"{at}, column 'quantity': expected a number >= 0, got {qty_text!r}")
        if len(problems) > bad:
            continue
        key = (day, node, product)
        earlier = seen.setdefault(key, {})
        if shift in earlier or (shift is None and earlier) or (shift is not None and None in earlier):
            first = earlier.get(shift, earlier.get(None, next(iter(earlier.values()), line)))
            problems.append(f"{at}: output of {product!r} by {node!r} on {day} is already given on"
                            f" line {first} (per shift and per day cannot be mixed, nor repeated)")
            continue
        earlier[shift] = line
        records.append(OutputRecord(day, node, shift, product, quantity, unit))
    units: dict[str, set[str]] = {}
    for r in records:
        units.setdefault(r.product, set()).add(r.unit)
    for product, found in sorted(units.items()):
        if len(found) > 1:
            problems.append(f"product {product!r} is given in several units ({', '.join(sorted(found))});"
                            " use one so quantities can be added")
    if problems:
        raise ConfigError(source, problems)
    return records


def load_output(plant_dir: Path, calendar: ShiftCalendar, *,
                nodes: Iterable[str] | None = None) -> list[OutputRecord]:
    """``output.csv`` of the plant directory (no file: no output recorded yet)."""
    path = plant_dir / OUTPUT_FILE
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read it: {exc}"]) from exc
    return parse_output_csv(text, str(path), calendar, nodes=nodes)


def _format(records: Sequence[OutputRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    for r in sorted(records, key=lambda r: (r.day, r.node, r.product, r.shift or "")):
        writer.writerow([r.day.isoformat(), r.node, r.shift or "", r.product, repr(r.quantity),
                         r.unit])
    return buffer.getvalue()


def add_output(plant_dir: Path, new: Sequence[OutputRecord], *, replace: bool = False,
               nodes: Iterable[str] | None = None) -> list[OutputRecord]:
    """The API's way in: merge ``new`` into ``output.csv``, validate the whole result as if it
    had been typed in, and rewrite the file atomically. A record for a (date, node, shift,
    product) already present is an error unless ``replace``. Returns every record."""
    calendar = load_shifts(plant_dir)
    node_list = None if nodes is None else list(nodes)
    current = load_output(plant_dir, calendar, nodes=node_list)
    if replace:
        keys = {(r.day, r.node, r.shift, r.product) for r in new}
        current = [r for r in current if (r.day, r.node, r.shift, r.product) not in keys]
    path = plant_dir / OUTPUT_FILE
    # Name clashes by the caller's record number: line numbers of the merged text would mean
    # nothing to the caller.
    taken: dict[tuple[date, str, str], list[str | None]] = {}
    for r in current:
        taken.setdefault((r.day, r.node, r.product), []).append(r.shift)
    problems = []
    for i, r in enumerate(new, start=1):
        shifts = taken.setdefault((r.day, r.node, r.product), [])
        what = f"record {i} ({r.day}, {r.node}, shift {r.shift or '(whole day)'}, {r.product})"
        if r.shift in shifts:
            problems.append(f"{what}: already recorded"
                            + ("" if replace else " (use replace to overwrite)"))
        elif shifts and (r.shift is None or None in shifts):
            problems.append(f"{what}: that date, node and product already have output recorded"
                            f" {'for the whole day' if None in shifts else 'per shift'};"
                            " per shift and per day cannot be mixed")
        shifts.append(r.shift)
    if problems:
        raise ConfigError(str(path), problems)
    text = _format([*current, *new])
    records = parse_output_csv(text, f"{path} (after adding {len(new)} record(s))", calendar,
                               nodes=node_list)
    write_atomic(path, text)
    return records
