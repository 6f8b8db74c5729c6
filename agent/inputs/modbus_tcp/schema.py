"""Config schema of the ``[[inputs.modbus_tcp]]`` section: one entry per TCP endpoint."""

from typing import Any

from agent.modbus.schema_parts import METER, PERIODS

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Modbus TCP endpoint: a PLC, DCS or protection relay, or a serial server in "
                   "front of an RS-485 line (framer \"rtu\" for RTU over TCP).",
    "required": ["host", "meters"],
    "additionalProperties": False,
    "properties": {
        "host": {"type": "string", "minLength": 1, "description": "Address of the device or server.",
                 "example": "192.168.10.20"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 502,
                 "description": "TCP port."},
        "framer": {"type": "string", "enum": ["socket", "rtu"], "default": "socket",
                   "description": "socket = Modbus TCP (MBAP header); rtu = RTU frames over TCP, as "
                                  "transparent serial servers pass them."},
        **PERIODS,
        "meters": {"type": "array", "minItems": 1, "items": METER,
                   "description": "The devices behind this endpoint, by unit id."},
    },
}
