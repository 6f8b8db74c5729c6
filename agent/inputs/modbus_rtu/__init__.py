"""Modbus RTU input: a serial RS-485 bus (schema.py, bus.py, sample.toml, README.md)."""
