"""The closed measurement vocabulary: every value a meter model may map, with its unit.

Meter model files may only use these names, so the receiver can rely on the unit of every value
without knowing which meter produced it. Counters are cumulative registers (energy); the receiver
turns them into interval amounts. Names follow ``<quantity>_<phase or total>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    INSTANT = "instant"  # a sample of a changing quantity (power, voltage)
    COUNTER = "counter"  # cumulative and non-decreasing (energy); differences are what count


@dataclass(frozen=True)
class Measurement:
    name: str
    unit: str
    kind: Kind
    description: str


def _phases(stem: str, unit: str, what: str, *, total: bool = True) -> list[Measurement]:
    items = [Measurement(f"{stem}_total", unit, Kind.INSTANT, f"{what}, all phases")] if total else []
    items += [Measurement(f"{stem}_l{p}", unit, Kind.INSTANT, f"{what}, phase L{p}") for p in (1, 2, 3)]
    return items


def _energy(stem: str, unit: str, what: str) -> list[Measurement]:
    return [Measurement(stem, unit, Kind.COUNTER, what)] + [
        Measurement(f"{stem}_l{p}", unit, Kind.COUNTER, f"{what}, phase L{p}") for p in (1, 2, 3)
    ]


_ALL: list[Measurement] = [
    *[Measurement(f"voltage_l{p}_n", "V", Kind.INSTANT, f"Voltage L{p}-N") for p in (1, 2, 3)],
    Measurement("voltage_l1_l2", "V", Kind.INSTANT, "Voltage L1-L2"),
    Measurement("voltage_l2_l3", "V", Kind.INSTANT, "Voltage L2-L3"),
    Measurement("voltage_l3_l1", "V", Kind.INSTANT, "Voltage L3-L1"),
    *[Measurement(f"current_l{p}", "A", Kind.INSTANT, f"Current L{p}") for p in (1, 2, 3)],
    Measurement("current_n", "A", Kind.INSTANT, "Neutral current"),
    *_phases("active_power", "W", "Active power"),
    *_phases("reactive_power", "var", "Reactive power"),
    *_phases("apparent_power", "VA", "Apparent power"),
    *_phases("power_factor", "1", "Power factor"),
    Measurement("frequency", "Hz", Kind.INSTANT, "Grid frequency"),
    *_energy("active_energy_import", "kWh", "Imported active energy"),
    *_energy("active_energy_export", "kWh", "Exported active energy"),
    Measurement("active_energy_total", "kWh", Kind.COUNTER, "Total active energy (import + export)"),
    Measurement("reactive_energy_import", "kvarh", Kind.COUNTER, "Imported reactive energy"),
    Measurement("reactive_energy_export", "kvarh", Kind.COUNTER, "Exported reactive energy"),
    Measurement("reactive_energy_total", "kvarh", Kind.COUNTER, "Total reactive energy"),
]

VOCABULARY: dict[str, Measurement] = {m.name: m for m in _ALL}

#: The counter the receiver turns into consumed electricity.
ENERGY_IMPORT = "active_energy_import"


def lookup(name: str) -> Measurement:
    """Return the measurement called ``name``; raise KeyError if it is not in the vocabulary."""
    return VOCABULARY[name]


#: The counters the receiver keeps interval rollups of: every whole-meter counter (per-phase
#: counters add nothing to the totals and would triple the work).
ROLLED_UP: frozenset[str] = frozenset(
    m.name for m in _ALL if m.kind is Kind.COUNTER and not m.name.endswith(("_l1", "_l2", "_l3"))
)
