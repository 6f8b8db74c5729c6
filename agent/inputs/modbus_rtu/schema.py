"""Config schema of the ``[[inputs.modbus_rtu]]`` section: one entry per RS-485 port."""

from typing import Any

from agent.modbus.schema_parts import METER, PERIODS

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
        **PERIODS,
        "meters": {"type": "array", "minItems": 1, "items": METER,
                   "description": "The meters on this bus."},
    },
}
