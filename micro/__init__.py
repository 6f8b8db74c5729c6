"""MicroPython variant for microcontroller meter nodes (see README.md)."""
