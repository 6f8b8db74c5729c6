"""The validated ``[outputs.mqtt]`` section as a frozen value, built next to the schema it follows.

``agent.config`` validates the whole file against the assembled schema first; ``mqtt_config``
only fills in defaults and turns paths into ``Path``. It opens no file: certificates and keys are
read when a connection is set up, so a missing file shows up in the uplink's errors and back-off,
not as a refusal to start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.outputs.mqtt.schema import SCHEMA


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    protocol: str  # "5" or "3.1.1"
    topic_prefix: str
    keepalive_s: int
    max_readings_per_envelope: int
    inflight: int
    username: str | None
    password_file: Path | None
    tls: bool
    ca_file: Path | None
    cert_file: Path | None = None  # client certificate (PEM) for mutual TLS
    key_file: Path | None = None  # its private key (PEM)
    status_every_s: int = 60
    mode: str = "acknowledged"  # or "one_way" (a data diode: nothing relies on acknowledgements)
    checkpoint_every_s: int = 300
    redundancy: int = 2  # one_way: sends of each envelope in all
    resend_delay_s: float = 30.0  # one_way: between two sends of an envelope

    @property
    def one_way(self) -> bool:
        return self.mode == "one_way"


CHECKPOINT_EVERY_S = {"acknowledged": 300, "one_way": 60}  # when checkpoint_every_s is not set


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def mqtt_config(table: Mapping[str, Any]) -> MqttConfig:
    """The section as a value; ``table`` must already have passed the schema."""
    props = SCHEMA["properties"]
    mq = {key: table.get(key, spec.get("default")) for key, spec in props.items()}
    return MqttConfig(
        host=mq["host"], port=mq["port"], protocol=mq["protocol"],
        topic_prefix=mq["topic_prefix"].rstrip("/"), keepalive_s=mq["keepalive_s"],
        max_readings_per_envelope=mq["max_readings_per_envelope"], inflight=mq["inflight"],
        username=mq["username"], password_file=_path(mq["password_file"]), tls=mq["tls"],
        ca_file=_path(mq["ca_file"]), cert_file=_path(mq["cert_file"]),
        key_file=_path(mq["key_file"]), status_every_s=mq["status_every_s"],
        mode=mq["mode"],
        checkpoint_every_s=table.get("checkpoint_every_s", CHECKPOINT_EVERY_S[mq["mode"]]),
        redundancy=mq["redundancy"], resend_delay_s=float(mq["resend_delay_s"]),
    )
