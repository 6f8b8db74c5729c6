"""An emulated RS-485 bus of Modbus RTU meters on a pseudo-terminal, for the demo and hw tests.

Example::

    from hw_tests.emulator import start_bus

    with start_bus([("chint-dtsu666", 1), ("eastron-sdm630", 2)], speedup=60) as bus:
        ...  # point the agent (pymodbus, RTU) at bus.port; bus.truth() is what was served
"""

from hw_tests.emulator.bus import BusFaults, Faults, PtyBus, UnitStats
from hw_tests.emulator.plant import CounterTruth, EmulatedMeter, EnergyTruth, scaled_clock
from hw_tests.emulator.rig import counter_truth, start_bus, truth_document, write_truth
from hw_tests.emulator.rtu import RtuError

__all__ = [
    "BusFaults",
    "CounterTruth",
    "EmulatedMeter",
    "EnergyTruth",
    "Faults",
    "PtyBus",
    "RtuError",
    "UnitStats",
    "counter_truth",
    "scaled_clock",
    "start_bus",
    "truth_document",
    "write_truth",
]
