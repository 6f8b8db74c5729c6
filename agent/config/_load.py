"""Load the agent's TOML config: parse, validate against the schema, then check what a schema
cannot (unique ids, known models). Every problem is reported at once with its path, and nothing
here opens a port, a socket or the state directory."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from agent.config._schema import SCHEMA
from agent.meters import MeterModel, models
from agent.outputs.mqtt.config import MqttConfig, mqtt_config
from agent.meters._model import model_from_table
from nengtan.errors import ConfigError

_VALIDATOR = Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class GatewayConfig:
    id: str
    key_file: Path
    state_dir: Path
    buffer_max_mb: int = 512
    buffer_full_policy: str = "drop_oldest"
    history_days: float = 7.0


@dataclass(frozen=True)
class MeterConfig:
    id: str
    model: MeterModel
    unit: int
    interval_s: float
    counter_interval_s: float
    ct_ratio: float = 1.0
    pt_ratio: float = 1.0
    timeout_ms: int | None = None  # None: the line's


@dataclass(frozen=True)
class BusConfig:
    """One line with one owner: a serial port (kind "rtu") or a TCP endpoint (kind "tcp")."""

    kind: str
    port: str  # the serial device, or "host:port" for TCP
    baudrate: int
    parity: str
    stopbits: int
    timeout_ms: int
    interval_s: float
    meters: tuple[MeterConfig, ...]
    framer: str = "rtu"  # TCP only: "socket" (MBAP) or "rtu" (RTU over TCP)

    @property
    def name(self) -> str:
        return self.port if self.kind == "rtu" else f"tcp://{self.port}"


@dataclass(frozen=True)
class AgentConfig:
    gateway: GatewayConfig
    buses: tuple[BusConfig, ...]
    mqtt: MqttConfig

    def meter(self, meter_id: str) -> tuple[BusConfig, MeterConfig]:
        for bus in self.buses:
            for meter in bus.meters:
                if meter.id == meter_id:
                    return bus, meter
        raise KeyError(meter_id)


def _path(error: ValidationError) -> str:
    parts: list[str] = []
    for item in error.absolute_path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _message(error: ValidationError) -> str:
    where = _path(error)
    if error.validator == "additionalProperties":
        return f"At '{where or 'top level'}': {error.message}"
    if error.validator == "required":
        return f"At '{where or 'top level'}': {error.message}"
    return f"At '{where}': {error.message}" if where else f"At the top level: {error.message}"


def _defaults(schema: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    props = schema.get("properties", {})
    return {k: data.get(k, spec.get("default")) for k, spec in props.items()}


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> AgentConfig:
    """Validate already-parsed TOML; raise ConfigError listing every problem with its path."""
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_message(e) for e in errors]
    known = dict(models())
    inline = data.get("models", {})
    for name, table in (inline.items() if isinstance(inline, dict) else ()):
        if not isinstance(table, dict):
            continue  # the schema has reported it
        try:
            known[name] = model_from_table(name, table, f"{source} [models.{name}]")
        except ConfigError as exc:
            problems.extend(p.replace("At '", f"At 'models.{name}.", 1) for p in exc.problems)
    if problems:
        # The checks below walk the structure the schema promises, so they wait for a clean one.
        raise ConfigError(source, problems)
    buses = tuple(_bus(raw, f"inputs.{kind}[{i}]", kind, known, problems)
                  for kind in ("modbus_rtu", "modbus_tcp")
                  for i, raw in enumerate(data["inputs"].get(kind, [])))
    _check_unique((m.id for b in buses for m in b.meters), "meter id", problems)
    _check_unique((b.name for b in buses), "line (serial port or TCP endpoint)", problems)
    if problems:
        raise ConfigError(source, problems)
    gw = _defaults(SCHEMA["properties"]["gateway"], data["gateway"])
    return AgentConfig(
        gateway=GatewayConfig(gw["id"], Path(gw["key_file"]), Path(gw["state_dir"]),
                              gw["buffer_max_mb"], gw["buffer_full_policy"], float(gw["history_days"])),
        buses=buses,
        mqtt=mqtt_config(data["outputs"]["mqtt"]),
    )


def _bus(raw: Mapping[str, Any], where: str, kind: str, known: Mapping[str, MeterModel],
         problems: list[str]) -> BusConfig:
    spec = SCHEMA["properties"]["inputs"]["properties"][kind]["items"]
    b = _defaults(spec, raw)
    counter_default = b["counter_interval_s"] or b["interval_s"]
    meters = []
    units: set[int] = set()
    for j, m in enumerate(b["meters"]):
        model = known.get(m["model"])
        if model is None:
            close = difflib.get_close_matches(m["model"], list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"At '{where}.meters[{j}].model': unknown model {m['model']!r}{hint}; "
                            "`nengtan agent models` lists them")
            continue
        if m["unit"] in units:
            problems.append(f"At '{where}.meters[{j}].unit': unit id {m['unit']} is already used "
                            "on this line")
        units.add(m["unit"])
        interval = float(m.get("interval_s", b["interval_s"]))
        meters.append(MeterConfig(m["id"], model, m["unit"], interval,
                                  float(m.get("counter_interval_s", counter_default)),
                                  float(m.get("ct_ratio", 1)), float(m.get("pt_ratio", 1)),
                                  m.get("timeout_ms")))
    if kind == "modbus_rtu":
        return BusConfig("rtu", b["port"], b["baudrate"], b["parity"], b["stopbits"],
                         b["timeout_ms"], float(b["interval_s"]), tuple(meters))
    return BusConfig("tcp", f"{b['host']}:{b['port']}", 0, "N", 1, b["timeout_ms"],
                     float(b["interval_s"]), tuple(meters), framer=b["framer"])


def _check_unique(values: Iterable[str], what: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            problems.append(f"At 'inputs': {what} {value!r} appears more than once")
        seen.add(value)


def load_config(path: Path | str) -> AgentConfig:
    """Read and validate the agent config at ``path``; raise ConfigError with every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    return parse_config(data, str(path))
