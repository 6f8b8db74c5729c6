"""Load and validate meter model files (``agent/meters/models/*.toml``).

A model maps names from the closed measurement vocabulary to registers. Validation collects every
problem with its path, like the config loader, so a broken model file is fixed in one go.

The file format
---------------
Top level: ``manufacturer``, ``description``, ``source`` (the documents or repositories the map
comes from), ``max_registers`` (per request, 1..125), ``turnaround_ms`` (typical first-byte
latency, for the planner's cost model), ``word_order`` (default for every point, "ABCD" if
absent), ``invalid`` (default for every integer point, see below), ``probe`` and ``points``.

``probe = { measurement = "...", low = ..., high = ... }`` names a point and the range a healthy
meter reports there, so ``scan`` can recognise the model.

Every entry of ``[points]`` is ``<measurement> = { ... }`` with:

- ``fc`` (3 holding, 4 input), ``address`` (0-based wire address), ``type`` (uint16, int16,
  uint32, int32, float32, uint64, int64, float64), ``scale`` (default 1) and ``word_order``.
  ``decoded × scale`` must be in the measurement's unit (``nengtan.measurements``): a meter that
  reports kW needs ``scale = 1000``, one that counts Wh needs ``scale = 0.001``.
- ``ratio`` (optional): "ct", "pt" or "ctpt" for a meter that reports secondary-side values. The
  bus multiplies by the meter's configured CT ratio (currents), PT ratio (voltages) or both
  (power and energy); see `ratio_factor`. Absent: the value is already primary-side. Only a
  measurement in A may take "ct", in V "pt", and in W, var, VA, kWh or kvarh "ctpt".
- ``exponent`` (optional): ``{ address = N, byte = "high" | "low" | "word", offset = K }``. A
  decimal exponent held in another register of the same function code: the value is multiplied
  by ``10 ** (field + K)``, where ``field`` is that register's high byte, low byte or whole word,
  read as a two's-complement signed integer of that width (SunSpec scale factors are signed
  words; Acrel's decimal-point bytes are small and positive, the same either way), and K is an
  integer -100..100 (default 0). An exponent whose magnitude after the offset exceeds
  `MAX_EXPONENT` (10) is garbage, and the point does not decode. Example, Acrel PZ:
  ``exponent = { address = 0x24, byte = "high", offset = -4 }``.
- ``sign`` (optional): ``{ address = N, bit = B }``. The value is a magnitude (the type must be
  unsigned) and bit B (0 = least significant) of register N, same function code, set means
  negative. Example, Acrel PZ total active power: ``sign = { address = 0x24, bit = 3 }``.
- ``invalid`` (optional): "max" when the meter reports "not available" as the largest value of
  the type (all ones for unsigned types, 0x7FFF... for signed ones), as ABB meters do; "none"
  (the default) otherwise. Integer types only; float registers say "not available" with NaN.

The exponent and sign registers change with the meter's range, so they must be read in the same
request as the value: `Point.registers` lists every address a point needs. Decoding is
`agent.meters.decode_point`; a register holding an exponent or sign is not itself a point.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agent.meters._decode import (INTEGER_TYPES, TYPES, WORD_ORDER_ALIASES, WORD_ORDERS,
                                  register_count)
from nengtan.errors import ConfigError
from nengtan.measurements import VOCABULARY

MODELS_DIR = Path(__file__).parent / "models"
FUNCTION_CODES = (3, 4)
RATIOS = ("ct", "pt", "ctpt")
#: Which ratio a measurement of each unit may take.
RATIO_UNITS = {"ct": ("A",), "pt": ("V",), "ctpt": ("W", "var", "VA", "kWh", "kvarh")}
EXPONENT_FIELDS = ("high", "low", "word")
#: Largest decimal exponent magnitude we believe (SunSpec bounds scale factors to -10..10).
MAX_EXPONENT = 10
INVALID_MARKERS = ("none", "max")


@dataclass(frozen=True)
class Exponent:
    """A decimal exponent in another register: the value is multiplied by 10 ** (field + offset)."""

    address: int
    field: str  # "high" byte, "low" byte or the whole "word"
    offset: int = 0

    def power(self, register: int) -> int:
        """The exponent a raw register value gives, offset applied."""
        if self.field == "word":
            raw = register - 0x10000 if register & 0x8000 else register
        else:
            byte = (register >> 8) & 0xFF if self.field == "high" else register & 0xFF
            raw = byte - 0x100 if byte & 0x80 else byte
        return raw + self.offset


@dataclass(frozen=True)
class SignBit:
    """The value is a magnitude; bit ``bit`` of register ``address`` set means negative."""

    address: int
    bit: int


@dataclass(frozen=True)
class Point:
    measurement: str
    function: int  # 3 = holding registers, 4 = input registers
    address: int  # PDU address, 0-based, as on the wire
    value_type: str
    scale: float
    word_order: str
    ratio: str | None = None  # "ct", "pt" or "ctpt": the bus multiplies by the configured ratios
    exponent: Exponent | None = None
    sign: SignBit | None = None
    invalid: str | None = None  # "max": the type's largest value means "not available"

    def __post_init__(self) -> None:
        problems = point_problems(self.measurement, self.function, self.address, self.value_type,
                                  self.scale, self.word_order, self.ratio, self.exponent,
                                  self.sign, self.invalid)
        if problems:
            raise ValueError(f"point {self.measurement!r}: "
                             + "; ".join(f"{key}: {message}" for key, message in problems))

    @property
    def count(self) -> int:
        return register_count(self.value_type)

    @property
    def end(self) -> int:
        return self.address + self.count

    @property
    def registers(self) -> tuple[int, ...]:
        """Every address (function code `function`) decoding needs, ascending: the value's own
        registers plus any exponent or sign register, which must come from the same request."""
        needed = set(range(self.address, self.end))
        if self.exponent is not None:
            needed.add(self.exponent.address)
        if self.sign is not None:
            needed.add(self.sign.address)
        return tuple(sorted(needed))


def point_problems(measurement: str, function: int, address: int, value_type: str, scale: float,
                   word_order: str, ratio: str | None = None, exponent: Exponent | None = None,
                   sign: SignBit | None = None, invalid: str | None = None) -> list[tuple[str, str]]:
    """Every rule a point breaks, as (key, message); the loader prefixes each key with its path."""
    problems: list[tuple[str, str]] = []
    known = VOCABULARY.get(measurement) if isinstance(measurement, str) else None
    if known is None:
        problems.append(("", "not in the measurement vocabulary"))
    if not _is_int(function) or function not in FUNCTION_CODES:
        problems.append(("fc", "must be 3 (holding) or 4 (input)"))
    if not _is_int(address) or not 0 <= address <= 0xFFFF:
        problems.append(("address", "must be a wire address 0..65535"))
    if value_type not in TYPES:
        problems.append(("type", f"must be one of {', '.join(TYPES)}"))
    elif _is_int(address) and address + register_count(value_type) > 0x10000:
        problems.append(("address", f"a {value_type} at {address:#06x} runs past 0xFFFF"))
    if (isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 0
            or not math.isfinite(scale)):
        problems.append(("scale", "must be a finite, non-zero number"))
    if word_order not in WORD_ORDERS:
        problems.append(("word_order", f"must be one of {', '.join(WORD_ORDERS)}"))
    own = (set(range(address, address + register_count(value_type)))
           if value_type in TYPES and _is_int(address) else set())
    if ratio is not None:
        if ratio not in RATIOS:
            problems.append(("ratio", f"must be one of {', '.join(RATIOS)} (or absent)"))
        elif known is not None and known.unit not in RATIO_UNITS[ratio]:
            problems.append(("ratio", f"{ratio!r} does not apply to a value in {known.unit!r}; it "
                                      f"needs {' or '.join(RATIO_UNITS[ratio])}"))
    if exponent is not None:
        if not _is_int(exponent.address) or not 0 <= exponent.address <= 0xFFFF:
            problems.append(("exponent.address", "must be a wire address 0..65535"))
        elif exponent.address in own:
            problems.append(("exponent.address", "must not be one of the value's own registers"))
        if exponent.field not in EXPONENT_FIELDS:
            problems.append(("exponent.byte", f"must be one of {', '.join(EXPONENT_FIELDS)}"))
        if not _is_int(exponent.offset) or not -100 <= exponent.offset <= 100:
            problems.append(("exponent.offset", "must be an integer -100..100"))
    if sign is not None:
        if not _is_int(sign.address) or not 0 <= sign.address <= 0xFFFF:
            problems.append(("sign.address", "must be a wire address 0..65535"))
        elif sign.address in own:
            problems.append(("sign.address", "must not be one of the value's own registers"))
        if not _is_int(sign.bit) or not 0 <= sign.bit <= 15:
            problems.append(("sign.bit", "must be a bit number 0..15"))
        if value_type in TYPES and not (value_type in INTEGER_TYPES
                                        and not INTEGER_TYPES[value_type][1]):
            problems.append(("sign", "needs an unsigned type: the register holds a magnitude"))
    if invalid is not None:
        if invalid != "max":
            problems.append(("invalid", "must be 'max' or absent"))
        elif value_type in TYPES and value_type not in INTEGER_TYPES:
            problems.append(("invalid", "applies to integer types only (floats use NaN)"))
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


_TOP_KEYS = {"manufacturer", "description", "source", "max_registers", "turnaround_ms",
             "word_order", "invalid", "probe", "points"}
_POINT_KEYS = {"fc", "address", "type", "scale", "word_order", "ratio", "exponent", "sign",
               "invalid"}


def _parse(name: str, data: Mapping[str, Any], where: str) -> MeterModel:
    problems: list[str] = []

    def need(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = data.get(key, default)
        if value is None or not isinstance(value, kind) or isinstance(value, bool):
            problems.append(f"At '{key}': required, of type {getattr(kind, '__name__', kind)}")
            return default
        return value

    for key in sorted(set(data) - _TOP_KEYS):
        problems.append(f"At '{key}': unknown key")
    manufacturer = need("manufacturer", str, "")
    description = need("description", str, "")
    source = need("source", str, "")
    max_registers = need("max_registers", int, 125)
    if not 1 <= max_registers <= 125:
        problems.append("At 'max_registers': must be 1..125")
    turnaround = float(need("turnaround_ms", (int, float), 20))
    if not 0 <= turnaround < 10_000:
        problems.append("At 'turnaround_ms': must be 0..10000")
    default_order = _word_order(data.get("word_order", "ABCD"), "word_order", problems)
    default_invalid = _invalid(data.get("invalid", "none"), "invalid", problems)
    points: dict[str, Point] = {}
    raw_points = need("points", dict, {})
    for measurement, raw in raw_points.items():
        point = _point(measurement, raw, default_order, default_invalid, problems)
        if point is None:
            continue
        points[measurement] = point
        span = point.registers[-1] - point.registers[0] + 1
        if span > max_registers:
            problems.append(f"At 'points.{measurement}': its registers span {span}, more than "
                            f"max_registers ({max_registers}) allows in one request")
    if not points:
        problems.append("At 'points': a model needs at least one point")
    probe = _probe(need("probe", dict, {}), problems)
    if probe.measurement not in points:
        problems.append("At 'probe.measurement': must name one of the model's points")
    if problems:
        raise ConfigError(where, problems)
    return MeterModel(name, manufacturer, description, source, max_registers, turnaround, probe,
                      points)


def _probe(raw: Mapping[str, Any], problems: list[str]) -> Probe:
    for key in sorted(set(raw) - {"measurement", "low", "high"}):
        problems.append(f"At 'probe.{key}': unknown key")
    limits = []
    for key in ("low", "high"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"At 'probe.{key}': required, a finite number")
            value = 0.0
        limits.append(float(value))
    probe = Probe(str(raw.get("measurement", "")), limits[0], limits[1])
    if probe.low >= probe.high:
        problems.append("At 'probe': 'low' must be below 'high'")
    return probe


def _word_order(raw: object, path: str, problems: list[str]) -> str:
    text = str(raw)
    canonical = WORD_ORDER_ALIASES.get(text.lower(), text.upper())
    if canonical not in WORD_ORDERS:
        problems.append(f"At '{path}': {raw!r} is not one of {', '.join(WORD_ORDERS)}")
        return "ABCD"
    return canonical


def _invalid(raw: object, path: str, problems: list[str]) -> str | None:
    if raw not in INVALID_MARKERS:
        problems.append(f"At '{path}': {raw!r} is not one of {', '.join(INVALID_MARKERS)}")
        return None
    return None if raw == "none" else str(raw)


def _table(raw: object, keys: dict[str, bool], path: str, problems: list[str]) -> dict[str, Any] | None:
    """A small inline table: ``keys`` maps each allowed key to whether it is required."""
    if not isinstance(raw, dict):
        problems.append(f"At '{path}': must be a table {{ {', '.join(keys)} }}")
        return None
    ok = True
    for key in sorted(set(raw) - set(keys)):
        problems.append(f"At '{path}.{key}': unknown key")
        ok = False
    for key, required in keys.items():
        if required and key not in raw:
            problems.append(f"At '{path}.{key}': required")
            ok = False
    return raw if ok else None


def _point(measurement: str, raw: object, default_order: str, default_invalid: str | None,
           problems: list[str]) -> Point | None:
    path = f"points.{measurement}"
    if measurement not in VOCABULARY:
        problems.append(f"At '{path}': not in the measurement vocabulary")
        return None
    if not isinstance(raw, dict):
        problems.append(f"At '{path}': must be a table {{ fc, address, type, scale }}")
        return None
    before = len(problems)
    problems.extend(f"At '{path}.{k}': unknown key" for k in sorted(set(raw) - _POINT_KEYS))
    value_type: Any = raw.get("type")
    order = _word_order(raw.get("word_order", default_order), f"{path}.word_order", problems)
    invalid = default_invalid
    if "invalid" in raw:
        invalid = _invalid(raw["invalid"], f"{path}.invalid", problems)
    elif not (isinstance(value_type, str) and value_type in INTEGER_TYPES):
        invalid = None  # a model-wide "max" applies to the integer points only
    exponent = sign = None
    if "exponent" in raw:
        table = _table(raw["exponent"], {"address": True, "byte": True, "offset": False},
                       f"{path}.exponent", problems)
        if table is not None:
            exponent = Exponent(table["address"], table["byte"], table.get("offset", 0))
    if "sign" in raw:
        table = _table(raw["sign"], {"address": True, "bit": True}, f"{path}.sign", problems)
        if table is not None:
            sign = SignBit(table["address"], table["bit"])
    fc: Any = raw.get("fc")
    address: Any = raw.get("address")
    scale: Any = raw.get("scale", 1)
    ratio: Any = raw.get("ratio")
    problems.extend(f"At '{path}{'.' + key if key else ''}': {message}" for key, message in
                    point_problems(measurement, fc, address, value_type, scale, order, ratio,
                                   exponent, sign, invalid))
    if len(problems) > before:
        return None
    return Point(measurement, fc, address, value_type, float(scale), order, ratio, exponent, sign,
                 invalid)


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
