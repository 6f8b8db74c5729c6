"""Schema pieces every Modbus input shares: the meter entry and the polling periods."""

from typing import Any

METER: dict[str, Any] = {
    "type": "object",
    "description": "One meter on this line.",
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
        "interval_s": {"type": "number", "minimum": 0.2, "maximum": 86400,
                       "description": "This meter's poll period, if not the line's."},
        "counter_interval_s": {"type": "number", "minimum": 0.2, "maximum": 86400,
                               "description": "This meter's energy-counter period, if not the line's."},
        "timeout_ms": {"type": "integer", "minimum": 20, "maximum": 5000,
                       "description": "This meter's time to start answering, if not the line's "
                                      "(a slow meter must not slow the others' failure handling)."},
        "ct_ratio": {"type": "number", "exclusiveMinimum": 0, "default": 1,
                     "description": "Current transformer ratio, applied to values the model marks as "
                                    "secondary-side (e.g. 50 for 250/5 A)."},
        "pt_ratio": {"type": "number", "exclusiveMinimum": 0, "default": 1,
                     "description": "Voltage transformer ratio, likewise (e.g. 100 for 10 kV/100 V)."},
    },
}

PERIODS: dict[str, Any] = {
    "timeout_ms": {"type": "integer", "minimum": 20, "maximum": 5000, "default": 250,
                   "description": "How long to wait for a meter's answer before it counts as silent."},
    "interval_s": {"type": "number", "minimum": 0.2, "maximum": 86400, "default": 10,
                   "description": "Poll period of instantaneous values; cycles start on multiples of "
                                  "it on the wall clock."},
    "counter_interval_s": {"type": "number", "minimum": 0.2, "maximum": 86400,
                           "description": "Period of energy counters, e.g. 900 for reads exactly on "
                                          ":00/:15/:30/:45; by default the same as interval_s."},
}
