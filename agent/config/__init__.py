"""Agent configuration: one schema gives the validator, the sample file and the reference docs."""

from agent.config._load import (
    AgentConfig,
    BusConfig,
    GatewayConfig,
    MeterConfig,
    load_config,
    parse_config,
)
from agent.outputs.mqtt.config import MqttConfig
from agent.config._render import render_docs, render_sample
from agent.config._schema import SCHEMA

__all__ = [
    "SCHEMA",
    "AgentConfig",
    "BusConfig",
    "GatewayConfig",
    "MeterConfig",
    "MqttConfig",
    "load_config",
    "parse_config",
    "render_docs",
    "render_sample",
]
