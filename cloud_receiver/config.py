"""The receiver's TOML config: one JSON Schema (Draft 2020-12), every problem reported at once.

Validation touches nothing the config names (database, registry directory, broker): those are
opened later by ``service.run``. It does read the package's own factor table and the system time
zone database, the same way it reads the schema, so that a wrong region or zone fails at load.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from cloud_receiver.carbon import grid_problem
from nengtan.errors import ConfigError

CONFIG_HINT = "Fix the listed keys; cloud_receiver/receiver.sample.toml is a commented example."


def _section(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": required or []}


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    **_section({
        "mqtt": _section({
            "host": {"type": "string", "minLength": 1, "default": "localhost"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 1883},
            "protocol": {"enum": ["5", "3.1.1"], "default": "5"},
            "topic_prefix": {"type": "string", "pattern": "^[^#+]+$", "default": "nengtan/v1"},
            # A fixed id is what makes the broker keep our session (and queue) across restarts.
            "client_id": {"type": "string", "minLength": 1, "maxLength": 64,
                          "default": "nengtan-receiver"},
            "keepalive_s": {"type": "integer", "minimum": 5, "maximum": 65535, "default": 60},
            # MQTT 5 only: how long the broker keeps queueing for us while we are down.
            "session_expiry_s": {"type": "integer", "minimum": 0, "maximum": 4294967295,
                                 "default": 7 * 24 * 3600},
            # Several receivers on one MQTT shared subscription ($share/<group>/...), each with
            # its own fixed client_id. A ShareName may not contain "/", "+" or "#" (MQTT 5 4.8.2).
            "share_group": {"type": "string", "minLength": 1, "maxLength": 64,
                            "pattern": "^[^/+#]+$"},
            # Broker login and TLS, as the agent's [outputs.mqtt] has them. Which keys need
            # which others is checked in parse_config, to say so in words.
            "username": {"type": "string", "minLength": 1},
            "password_file": {"type": "string", "minLength": 1},  # never the password itself
            "tls": {"type": "boolean", "default": False},
            "ca_file": {"type": "string", "minLength": 1},
            "cert_file": {"type": "string", "minLength": 1},
            "key_file": {"type": "string", "minLength": 1},
        }),
        # Exactly one of them (checked in parse_config, to name both keys in one message).
        "storage": _section({"path": {"type": "string", "minLength": 1},
                             "url": {"type": "string", "pattern": "^postgres(ql)?://."}}),
        "registry": _section({"dir": {"type": "string", "minLength": 1}}, ["dir"]),
        "carbon": _section({
            "regime": {"enum": ["statistical", "carbon_market"], "default": "statistical"},
            "region": {"type": "string", "minLength": 1, "default": "henan"},
            "year": {"type": "integer", "minimum": 2000, "maximum": 2100, "default": 2023},
            "timezone": {"type": "string", "minLength": 1, "default": "Asia/Shanghai"},
        }),
        # Optional: without it the rules run only from `nengtan receiver alerts check`.
        "alerts": _section({
            "plant": {"type": "string", "minLength": 1},
            # Each run reads the store; more often than every 10 s is only load.
            "interval_s": {"type": "integer", "minimum": 10, "maximum": 86400, "default": 300},
        }, ["plant"]),
    }, ["storage", "registry"]),
}
_VALIDATOR = Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    protocol: str  # "5" or "3.1.1"
    topic_prefix: str
    client_id: str
    keepalive_s: int
    session_expiry_s: int
    share_group: str | None = None  # None: a plain (not shared) subscription
    username: str | None = None
    password_file: Path | None = None  # read when a client is made (service start)
    tls: bool = False  # always verified: TLS >= 1.2, the broker's chain and host name
    ca_file: Path | None = None  # None: the system's CAs
    cert_file: Path | None = None  # client certificate (PEM) for mutual TLS
    key_file: Path | None = None  # its private key (PEM)


@dataclass(frozen=True)
class CarbonConfig:
    regime: str
    region: str
    year: int
    timezone: str


@dataclass(frozen=True)
class AlertsConfig:
    plant_dir: Path  # checked when the service starts, not here (validation does no I/O)
    interval_s: float


@dataclass(frozen=True)
class ReceiverConfig:
    mqtt: MqttConfig
    storage_path: Path | None  # [storage] path: the SQLite file; None when url is set
    registry_dir: Path
    carbon: CarbonConfig
    storage_url: str | None  # [storage] url: the PostgreSQL database; None when path is set
    #: Where local files kept beside the database go (the feed audit log): the SQLite file's
    #: directory, or the config file's directory with a PostgreSQL url.
    files_dir: Path
    #: ``[alerts]``: the service evaluates the plant's alert rules itself; None: it does not.
    alerts: AlertsConfig | None = None

    @property
    def storage(self) -> Path | str:
        """What ``open_store`` takes: the SQLite path or the PostgreSQL URL."""
        if self.storage_url is not None:
            return self.storage_url
        assert self.storage_path is not None  # parse_config sets exactly one of them
        return self.storage_path


def _where(path: list[str | int]) -> str:
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def _messages(error: ValidationError) -> list[str]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # Name each unknown key at its own path, which is where the reader will look for it.
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        return [f"At '{_where([*path, k])}': unknown key" for k in error.instance if k not in known]
    if (error.validator == "required" and isinstance(error.instance, dict)
            and isinstance(error.validator_value, list)):
        missing = [k for k in error.validator_value if k not in error.instance]
        return [f"At '{_where([*path, k])}': required key is missing" for k in missing]
    return [f"At '{_where(path) or 'top level'}': {error.message}"]


def _filled(section: str, data: Mapping[str, Any]) -> dict[str, Any]:
    props = SCHEMA["properties"][section]["properties"]
    given = data.get(section, {})
    return {k: given.get(k, spec.get("default")) for k, spec in props.items()}


def _semantic_problems(carbon: Mapping[str, Any]) -> list[str]:
    problems = []
    problem = grid_problem(carbon["regime"], carbon["region"], carbon["year"])
    if problem:
        problems.append(f"At 'carbon': {problem}")
    try:
        zoneinfo.ZoneInfo(carbon["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"At 'carbon.timezone': unknown time zone {carbon['timezone']!r} "
                        "(use an IANA name such as 'Asia/Shanghai')")
    return problems


def _mqtt_problems(mqtt: Mapping[str, Any]) -> list[str]:
    """The [mqtt] keys that only make sense together."""
    problems = []
    for key, other in (("cert_file", "key_file"), ("key_file", "cert_file")):
        if key in mqtt and other not in mqtt:
            problems.append(f"At 'mqtt.{other}': required key is missing ({key} is set; "
                            "mutual TLS takes both)")
    tls_only = [k for k in ("ca_file", "cert_file", "key_file") if k in mqtt]
    # A mistyped tls is the schema's to report; this would only repeat it.
    if tls_only and mqtt.get("tls", False) is False:
        problems.append(f"At 'mqtt.tls': must be true when {', '.join(tls_only)} "
                        f"{'is' if len(tls_only) == 1 else 'are'} set (used only over TLS)")
    if "password_file" in mqtt and "username" not in mqtt:
        problems.append("At 'mqtt.username': required key is missing (password_file is set; "
                        "the broker takes a password only with a user name)")
    return problems


def parse_config(data: Mapping[str, Any], source: str = "<config>",
                 base_dir: Path | None = None) -> ReceiverConfig:
    """Validate parsed TOML; raise ConfigError with every problem. Relative paths are taken
    relative to ``base_dir`` (the config file's directory), so a unit's cwd does not matter."""
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [m for e in errors for m in _messages(e)]
    carbon_is_typed = not any(list(e.absolute_path)[:1] == ["carbon"] for e in errors)
    if carbon_is_typed and isinstance(data.get("carbon", {}), dict):
        problems += _semantic_problems(_filled("carbon", data))
    if isinstance(data.get("mqtt"), dict):
        problems += _mqtt_problems(data["mqtt"])
    storage = data.get("storage")
    if isinstance(storage, dict) and len({"path", "url"} & storage.keys()) != 1:
        problems.append("At 'storage': set exactly one of path (a SQLite file) or url "
                        "(postgresql://user@host:5432/database)")
    if problems:
        raise ConfigError(source, problems, hint=CONFIG_HINT)
    base = base_dir or Path.cwd()
    mq, carbon = _filled("mqtt", data), _filled("carbon", data)
    alerts = None
    if "alerts" in data:
        al = _filled("alerts", data)
        alerts = AlertsConfig(base / al["plant"], al["interval_s"])
    path = data["storage"].get("path")
    storage_path = None if path is None else base / path
    return ReceiverConfig(
        mqtt=MqttConfig(mq["host"], mq["port"], mq["protocol"], mq["topic_prefix"].rstrip("/"),
                        mq["client_id"], mq["keepalive_s"], mq["session_expiry_s"],
                        mq["share_group"], mq["username"], _under(base, mq["password_file"]),
                        mq["tls"], _under(base, mq["ca_file"]), _under(base, mq["cert_file"]),
                        _under(base, mq["key_file"])),
        storage_path=storage_path,
        storage_url=data["storage"].get("url"),
        files_dir=base if storage_path is None else storage_path.parent,
        registry_dir=base / data["registry"]["dir"],
        carbon=CarbonConfig(carbon["regime"], carbon["region"], carbon["year"],
                            carbon["timezone"]),
        alerts=alerts,
    )


def _under(base: Path, value: str | None) -> Path | None:
    return None if value is None else base / value


def load_config(path: Path | str) -> ReceiverConfig:
    """Read and validate the receiver config at ``path``; raise ConfigError with every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"],
                          hint=CONFIG_HINT) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"], hint=CONFIG_HINT) from exc
    return parse_config(data, str(path), path.parent.resolve())
