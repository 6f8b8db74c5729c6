"""A small envelope that uses every feature of wire v2, shared by the wire tests."""

from __future__ import annotations

from nengtan.envelope import ClockInfo, Cycle, Envelope, Gap, Reading

T = 1_763_769_600_000

SAMPLE = Envelope("gw-1", 3, 5, 7, "A" * 43, False, (
    Cycle(5, (Reading("m1", "active_energy_import", T, 1234.5, "good"),
              Reading("m1", "voltage_l1_n", T + 40, 230.13000000000002, "good"),
              Reading("m2", "active_power_total", T + 95, -41250.0, "good"))),
    Cycle(6, (Reading("m1", "active_energy_import", T + 10_001, 1234.25, "suspect"),
              Reading("m1", "voltage_l1_n", T + 10_041, None, "bad"),
              Reading("m2", "active_power_total", T + 10_090, 0.0, "good"))),
    Cycle(7, ()),  # a cycle in which nothing could be read
), gaps=(Gap(1, 2, 500, "disk_cap"), Gap(4, 4, 250, "operator")),
    clock=ClockInfo("6f1c2d8e-4b7a-4e59-9a0d-3c5e7f9b1a2d", 12_345, T + 30_000))
