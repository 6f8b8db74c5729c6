"""The whole agent config schema (JSON Schema), assembled from each plugin's own section."""

from typing import Any

from agent.inputs.modbus_rtu.schema import SCHEMA as MODBUS_RTU
from agent.inputs.modbus_tcp.schema import SCHEMA as MODBUS_TCP
from agent.outputs.mqtt.schema import SCHEMA as MQTT

GATEWAY: dict[str, Any] = {
    "type": "object",
    "description": "Who this gateway is and where it keeps its state.",
    "required": ["id"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
               "description": "Gateway id, unique in the receiver's registry.",
               "example": "henan-zz-plant1-gw01"},
        "key_file": {"type": "string", "default": "/etc/nengtan/gateway.key",
                     "description": "Private signing key (PEM, mode 0600). Under systemd the "
                                    "gateway.key credential is used instead."},
        "state_dir": {"type": "string", "default": "/var/lib/nengtan",
                      "description": "Where the SQLite buffer lives; must survive reboots."},
        "buffer_max_mb": {"type": "integer", "minimum": 1, "default": 512,
                          "description": "Disk cap of the buffer (database + WAL), in MiB. When a new "
                                         "cycle would not fit, sent history goes first, then "
                                         "buffer_full_policy applies. Keep it under half the free "
                                         "space of the data partition."},
        "buffer_full_policy": {"enum": ["drop_oldest", "block"], "default": "drop_oldest",
                               "description": "At the cap with no sent history left: drop_oldest "
                                              "drops the oldest unsent cycles, block refuses new "
                                              "ones (and raises an alarm). Either way every drop is "
                                              "counted and declared as a signed gap in the next "
                                              "envelope."},
        "history_days": {"type": "number", "minimum": 0, "default": 7,
                         "description": "Days sent cycles stay in the buffer for technicians; an "
                                        "hourly job deletes older ones in small batches."},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["gateway", "inputs", "outputs"],
    "additionalProperties": False,
    "properties": {
        "gateway": GATEWAY,
        "inputs": {
            "type": "object", "description": "Where readings come from.",
            "additionalProperties": False, "minProperties": 1,
            "properties": {
                "modbus_rtu": {"type": "array", "minItems": 1, "items": MODBUS_RTU,
                               "description": MODBUS_RTU["description"]},
                "modbus_tcp": {"type": "array", "minItems": 1, "items": MODBUS_TCP,
                               "description": MODBUS_TCP["description"]},
            },
        },
        "outputs": {
            "type": "object", "description": "Where signed batches go.",
            "additionalProperties": False, "required": ["mqtt"],
            "properties": {"mqtt": MQTT},
        },
        "models": {
            "type": "object",
            "description": "Meter models defined in this file, in the same form as the model files.",
            "additionalProperties": {"type": "object"},
        },
    },
}
