"""Modbus TCP input: PLCs, DCS, relays and serial servers (schema.py, bus.py, sample.toml, README.md)."""
