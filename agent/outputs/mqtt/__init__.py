"""MQTT output: the outbound uplink (schema.py, config.py, uplink.py, sample.toml, README.md)."""
