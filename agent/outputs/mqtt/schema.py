"""Config schema of the ``[outputs.mqtt]`` section: the outbound uplink to the broker."""

from typing import Any

SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Publish signed batches to an MQTT broker. Outbound only: the agent never listens.",
    "required": ["host"],
    "additionalProperties": False,
    "properties": {
        "host": {"type": "string", "minLength": 1, "description": "Broker host name or address.",
                 "example": "mqtt.plant.example"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 1883,
                 "description": "Broker port (8883 is the usual TLS port)."},
        "protocol": {"type": "string", "enum": ["5", "3.1.1"], "default": "5",
                     "description": "MQTT version; use 3.1.1 for brokers that speak nothing newer."},
        "topic_prefix": {"type": "string", "pattern": "^[^#+]+$", "default": "nengtan/v1",
                         "description": "Batches go to <topic_prefix>/<gateway id>/batch."},
        "keepalive_s": {"type": "integer", "minimum": 5, "maximum": 3600, "default": 30,
                        "description": "MQTT keepalive; a dead link is noticed within 1.5 times this."},
        "max_readings_per_envelope": {"type": "integer", "minimum": 1, "maximum": 100000,
                                      "default": 5000,
                                      "description": "Upper bound on readings sealed into one envelope."},
        "inflight": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20,
                     "description": "Envelopes published but not yet acknowledged, at most."},
        "username": {"type": "string", "description": "Broker user name, if the broker wants one."},
        "password_file": {"type": "string",
                          "description": "File holding the broker password (never the password itself)."},
        "tls": {"type": "boolean", "default": False, "description": "Use TLS to the broker."},
        "ca_file": {"type": "string", "description": "CA bundle that signed the broker's certificate."},
    },
}
