"""MQTT output: the outbound uplink (schema.py, uplink.py, sample.toml, README.md)."""
