"""Config schema of the ``[[inputs.modbus_rtu]]`` section: one entry per RS-485 port."""

from typing import Any

METER: dict[str, Any] = {
    "type": "object",
    "description": "One meter on this bus.",
    "required": ["id", "model", "unit"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
               "description": "Meter id, unique on this gateway; it names the meter in every report.",
               "example": "main-incomer"},
        "model": {"type": "string", "description": "Meter model: a file name from agent/meters/models "
                  "without .toml, or a model defined under [models].", "example": "chint-dtsu666"},
        "unit": {"type": "integer", "minimum": 1, "maximum": 247,
                 "description": "Modbus unit id (slave address) set on the meter.", "example": 1},
    },
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A serial RS-485 bus polled with Modbus RTU. The agent is the only master on it.",
    "required": ["port", "meters"],
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string", "minLength": 1,
                 "description": "Serial device; prefer the stable udev name over /dev/ttyUSB0.",
                 "example": "/dev/rs485-A"},
        "baudrate": {"type": "integer", "enum": [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200],
                     "default": 9600,
                     "description": "Line speed in baud; every meter on the bus must match."},
        "parity": {"type": "string", "enum": ["N", "E", "O"], "default": "N",
                   "description": "Parity: N, E or O (quote it: a bare E is not valid TOML)."},
        "stopbits": {"type": "integer", "enum": [1, 2], "default": 1,
                     "description": "Stop bits; the Modbus spec asks for 2 when parity is N."},
        "timeout_ms": {"type": "integer", "minimum": 20, "maximum": 5000, "default": 250,
                       "description": "How long to wait for a meter's answer before it counts as silent."},
        "interval_s": {"type": "number", "minimum": 0.2, "maximum": 3600, "default": 10,
                       "description": "Poll period; cycles start on multiples of it on the wall clock."},
        "meters": {"type": "array", "minItems": 1, "items": METER,
                   "description": "The meters on this bus."},
    },
}
