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
                         "description": "Batches go to <topic_prefix>/<gateway id>/batch; the retained "
                                        "health topics are .../state and .../status."},
        "keepalive_s": {"type": "integer", "minimum": 5, "maximum": 3600, "default": 30,
                        "description": "MQTT keepalive: a dead link, even a silent one, is noticed "
                                       "within 1.5 times this (the agent pings every half of it)."},
        "max_readings_per_envelope": {"type": "integer", "minimum": 1, "maximum": 100000,
                                      "default": 5000,
                                      "description": "Upper bound on readings sealed into one envelope."},
        "inflight": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20,
                     "description": "Envelopes published but not yet acknowledged, at most (in "
                                    "one_way mode: handed to the client but not yet written to "
                                    "the socket)."},
        "username": {"type": "string", "description": "Broker user name, if the broker wants one."},
        "password_file": {"type": "string",
                          "description": "File holding the broker password (never the password itself)."},
        "tls": {"type": "boolean", "default": False,
                "description": "Use TLS (1.2 or newer) to the broker. The broker's certificate and "
                               "host name are always verified; there is no way to turn that off."},
        "ca_file": {"type": "string",
                    "description": "CA bundle that signed the broker's certificate (default: the "
                                   "system's CAs)."},
        "cert_file": {"type": "string",
                      "description": "Client certificate (PEM) for mutual TLS; needs key_file and "
                                     "tls = true."},
        "key_file": {"type": "string",
                     "description": "Private key (PEM, mode 0600) of cert_file."},
        "status_every_s": {"type": "integer", "minimum": 5, "maximum": 3600, "default": 60,
                           "description": "Publish a retained health status to "
                                          "<topic_prefix>/<gateway id>/status this often."},
        "mode": {"type": "string", "enum": ["acknowledged", "one_way"], "default": "acknowledged",
                 "description": "acknowledged: an envelope counts as sent on the broker's PUBACK "
                                "(QoS 1) and is sent again until then. one_way: for a data diode "
                                "or any link whose acknowledgements come from a near-side proxy: "
                                "nothing waits for an ack; envelopes go out at QoS 0, count as "
                                "sent once written to the socket, are sent `redundancy` times, "
                                "and checkpoints let the far side list exactly what it lacks "
                                "(carry that across with `nengtan agent export`)."},
        "checkpoint_every_s": {"type": "integer", "minimum": 5, "maximum": 86400, "default": 300,
                               "description": "Publish a signed checkpoint (last sealed cycle, "
                                              "chain head) to <topic_prefix>/<gateway id>/checkpoint "
                                              "this often and after every (re)connect. When not "
                                              "set: 300, or 60 in one_way mode."},
        "redundancy": {"type": "integer", "minimum": 1, "maximum": 10, "default": 2,
                       "description": "one_way mode only: how many times in all each envelope is "
                                      "sent, the copies resend_delay_s apart."},
        "resend_delay_s": {"type": "number", "minimum": 1, "maximum": 3600, "default": 30,
                           "description": "one_way mode only: seconds between two copies of an "
                                          "envelope, so one burst of loss rarely takes every copy."},
    },
    # A client certificate comes with its key, and only makes sense over TLS.
    "dependentRequired": {"cert_file": ["key_file", "tls"], "key_file": ["cert_file"]},
    "dependentSchemas": {
        "cert_file": {"properties": {"tls": {"const": True}}},
        # Redundancy without one_way would be a setting that silently does nothing.
        "redundancy": {"required": ["mode"], "properties": {"mode": {"const": "one_way"}}},
        "resend_delay_s": {"required": ["mode"], "properties": {"mode": {"const": "one_way"}}},
    },
}
