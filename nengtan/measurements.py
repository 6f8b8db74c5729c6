"""The closed measurement vocabulary: every value a meter model may map, with its unit.

Meter model files may only use these names, so the receiver can rely on the unit of every value
without knowing which meter produced it. Counters are cumulative registers (energy, volume, mass);
the receiver turns them into interval amounts. Electrical names follow
``<quantity>_<phase or total>``; non-electric ones name the quantity and, where it matters, the
reference it is measured against (``gas_volume_std``, ``pressure_gauge``).

Non-electric units are the ones the Chinese statistics and the plant model account in, so that a
heat, steam or gas point needs no ``scale`` in the common case:

- gas volume in m3; ``_std`` means the standard reference conditions of Chinese natural-gas trade
  metering, 20 °C and 101.325 kPa (GB/T 19205, 天然气标准参比条件). A volume at line conditions
  (``gas_volume``) is kept for diagnosis, never accounted: only a volume corrector's standard
  volume is an amount of gas (see `NOT_ACCOUNTED`);
- steam mass in t, heat energy in GJ (a meter counting kWh or MWh maps with ``scale`` 0.0036 or
  3.6), water volume in m3 (what water meters count; the plant model accounts fresh water in t,
  so a water point states its ``scale``);
- temperature in °C, pressure in kPa, either gauge (relative to the atmosphere, what steam lines
  and most transmitters show) or absolute (what gas correctors and steam tables use).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    INSTANT = "instant"  # a sample of a changing quantity (power, voltage)
    COUNTER = "counter"  # cumulative, non-decreasing (energy, volume); differences count


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
    # Non-electric counters.
    Measurement("gas_volume_std", "m3", Kind.COUNTER,
                "Gas volume at standard reference conditions (20 °C, 101.325 kPa), corrected"),
    Measurement("gas_volume", "m3", Kind.COUNTER,
                "Gas volume at line conditions, uncorrected (not for accounting)"),
    Measurement("steam_mass", "t", Kind.COUNTER, "Steam mass"),
    Measurement("heat_energy", "GJ", Kind.COUNTER, "Heat (thermal energy) delivered"),
    Measurement("water_volume", "m3", Kind.COUNTER, "Water volume"),
    # Non-electric instants.
    Measurement("volume_flow", "m3/h", Kind.INSTANT, "Volume flow at line conditions"),
    Measurement("volume_flow_std", "m3/h", Kind.INSTANT,
                "Gas volume flow at standard reference conditions (20 °C, 101.325 kPa)"),
    Measurement("mass_flow", "t/h", Kind.INSTANT, "Mass flow"),
    Measurement("heat_power", "kW", Kind.INSTANT, "Heat (thermal) power"),
    Measurement("temperature", "°C", Kind.INSTANT,
                "Medium temperature at a single-pipe meter (steam, gas)"),
    Measurement("temperature_supply", "°C", Kind.INSTANT, "Supply (flow) pipe temperature"),
    Measurement("temperature_return", "°C", Kind.INSTANT, "Return pipe temperature"),
    Measurement("pressure_gauge", "kPa", Kind.INSTANT, "Medium pressure above atmospheric"),
    Measurement("pressure_absolute", "kPa", Kind.INSTANT, "Medium absolute pressure"),
]

VOCABULARY: dict[str, Measurement] = {m.name: m for m in _ALL}

#: The counter the receiver turns into consumed electricity.
ENERGY_IMPORT = "active_energy_import"


def lookup(name: str) -> Measurement:
    """Return the measurement called ``name``; raise KeyError if it is not in the vocabulary."""
    return VOCABULARY[name]


#: Counters that are stored and rolled up but must never become an accounted amount: a gas volume
#: at line conditions depends on the line's pressure and temperature (at 0.4 MPa gauge one line
#: m3 holds about five standard m3), so only the corrector's standard volume is an amount of gas.
NOT_ACCOUNTED: frozenset[str] = frozenset({"gas_volume"})

#: The counters the receiver keeps interval rollups of: every whole-meter counter (per-phase
#: counters add nothing to the totals and would triple the work).
ROLLED_UP: frozenset[str] = frozenset(
    m.name for m in _ALL if m.kind is Kind.COUNTER and not m.name.endswith(("_l1", "_l2", "_l3"))
)
