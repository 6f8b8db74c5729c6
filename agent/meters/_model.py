"""Load and validate meter model files (``agent/meters/models/*.toml``).

A model maps names from the closed measurement vocabulary to registers. Validation collects every
problem with its path, like the config loader, so a broken model file is fixed in one go.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agent.meters._decode import TYPES, WORD_ORDER_ALIASES, WORD_ORDERS, register_count
from nengtan.errors import ConfigError
from nengtan.measurements import VOCABULARY

MODELS_DIR = Path(__file__).parent / "models"
FUNCTION_CODES = (3, 4)


@dataclass(frozen=True)
class Point:
    measurement: str
    function: int  # 3 = holding registers, 4 = input registers
    address: int  # PDU address, 0-based, as on the wire
    value_type: str
    scale: float
    word_order: str

    @property
    def count(self) -> int:
        return register_count(self.value_type)

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True)
class Probe:
    """How `scan` recognises the model: a measurement and the range a healthy meter reports."""

    measurement: str
    low: float
    high: float


@dataclass(frozen=True)
class MeterModel:
    name: str
    manufacturer: str
    description: str
    source: str
    max_registers: int  # per request; Eastron meters stop at 80, the Modbus limit is 125
    turnaround_ms: float  # typical first-byte latency, used by the planner's cost model
    probe: Probe
    points: Mapping[str, Point]


def _parse(name: str, data: Mapping[str, Any], where: str) -> MeterModel:
    problems: list[str] = []

    def need(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = data.get(key, default)
        if value is None or not isinstance(value, kind) or isinstance(value, bool):
            problems.append(f"At '{key}': required, of type {getattr(kind, '__name__', kind)}")
            return default
        return value

    for key in set(data) - {"manufacturer", "description", "source", "max_registers",
                            "turnaround_ms", "word_order", "probe", "points"}:
        problems.append(f"At '{key}': unknown key")
    manufacturer = need("manufacturer", str, "")
    description = need("description", str, "")
    source = need("source", str, "")
    max_registers = need("max_registers", int, 125)
    if not 1 <= max_registers <= 125:
        problems.append("At 'max_registers': must be 1..125")
    turnaround = float(need("turnaround_ms", (int, float), 20))
    default_order = _word_order(data.get("word_order", "ABCD"), "word_order", problems)
    points: dict[str, Point] = {}
    raw_points = need("points", dict, {})
    for measurement, raw in raw_points.items():
        point = _point(measurement, raw, default_order, problems)
        if point is not None:
            points[measurement] = point
    if not points:
        problems.append("At 'points': a model needs at least one point")
    probe_raw = need("probe", dict, {})
    probe = Probe(str(probe_raw.get("measurement", "")),
                  float(probe_raw.get("low", 0)), float(probe_raw.get("high", 0)))
    if probe.measurement not in points:
        problems.append("At 'probe.measurement': must name one of the model's points")
    if probe.low >= probe.high:
        problems.append("At 'probe': 'low' must be below 'high'")
    if problems:
        raise ConfigError(where, problems)
    return MeterModel(name, manufacturer, description, source, max_registers, turnaround, probe,
                      points)


def _word_order(raw: object, path: str, problems: list[str]) -> str:
    text = str(raw)
    canonical = WORD_ORDER_ALIASES.get(text.lower(), text.upper())
    if canonical not in WORD_ORDERS:
        problems.append(f"At '{path}': {raw!r} is not one of {', '.join(WORD_ORDERS)}")
        return "ABCD"
    return canonical


def _point(measurement: str, raw: object, default_order: str, problems: list[str]) -> Point | None:
    path = f"points.{measurement}"
    if measurement not in VOCABULARY:
        problems.append(f"At '{path}': not in the measurement vocabulary")
        return None
    if not isinstance(raw, dict):
        problems.append(f"At '{path}': must be a table {{ fc, address, type, scale }}")
        return None
    unknown = set(raw) - {"fc", "address", "type", "scale", "word_order"}
    problems.extend(f"At '{path}.{k}': unknown key" for k in sorted(unknown))
    fc, address, value_type = raw.get("fc"), raw.get("address"), raw.get("type")
    scale = raw.get("scale", 1)
    ok = True
    if fc not in FUNCTION_CODES:
        problems.append(f"At '{path}.fc': must be 3 (holding) or 4 (input)")
        ok = False
    if not isinstance(address, int) or not 0 <= address <= 0xFFFF:
        problems.append(f"At '{path}.address': must be a wire address 0..65535")
        ok = False
    if value_type not in TYPES:
        problems.append(f"At '{path}.type': must be one of {', '.join(TYPES)}")
        ok = False
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 0:
        problems.append(f"At '{path}.scale': must be a non-zero number")
        ok = False
    order = _word_order(raw.get("word_order", default_order), f"{path}.word_order", problems)
    if not ok:
        return None
    assert isinstance(fc, int) and isinstance(address, int) and isinstance(value_type, str)
    return Point(measurement, fc, address, value_type, float(scale), order)


def load_model_file(path: Path) -> MeterModel:
    """Load one model file; raise ConfigError listing every problem in it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read model: {exc}"]) from exc
    return _parse(path.stem, data, str(path))


def model_from_table(name: str, data: Mapping[str, Any], where: str) -> MeterModel:
    """A model defined inline in a config file (``[models.<name>]``)."""
    return _parse(name, data, where)


@cache
def models() -> Mapping[str, MeterModel]:
    """Every model shipped with the agent, by name (the file name without ``.toml``)."""
    return {p.stem: load_model_file(p) for p in sorted(MODELS_DIR.glob("*.toml"))}
