"""Conversion factors as versioned data: grid CO2 factors and the electricity coal coefficient.

The numbers live in ``factors/*.toml`` with a unit, a source and a verification status per entry,
so a report can say exactly which published value it used, and a new year's notice is a data
change. A config may only pick an entry from the table, never type in a number: published reports
have cited factors that appear in no notice (standards.md §2.2), and a whitelist prevents that.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from nengtan.errors import ConfigError

GRID_UNIT = "kgCO2/kWh"
COAL_UNIT = "kgce/kWh"
COAL_BASIS = "calorific_equivalent"  # GB/T 2589 当量值; see factors/coal.toml for why only this
# kgCO2/kWh equals tCO2/MWh; a value outside this range is a unit slip (e.g. 0.0005703).
_PLAUSIBLE = (0.05, 1.5)


@dataclass(frozen=True)
class Factor:
    """One published factor and where it comes from."""

    key: str  # "statistical/henan/2023" or "calorific_equivalent"
    value: float
    unit: str
    source: str
    status: str  # V verified, C corroborated, U unverified (standards.md)
    table_version: str

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "value": self.value, "unit": self.unit, "source": self.source,
                "status": self.status, "table_version": self.table_version}


@dataclass(frozen=True)
class FactorSet:
    """The factors one report uses."""

    grid_co2: Factor
    coal: Factor

    def as_dict(self) -> dict[str, object]:
        return {"grid_co2": self.grid_co2.as_dict(), "coal": self.coal.as_dict()}


def grid_key(regime: str, region: str, year: int) -> str:
    return f"{regime}/{region}/{year}"


def _read(name: str) -> dict[str, Any]:
    text = resources.files("cloud_receiver.factors").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


@functools.cache
def grid_factors() -> dict[str, Factor]:
    """Every grid CO2 factor in the shipped table, by ``regime/region/year``."""
    table = _read("grid_co2.toml")
    version, unit = str(table["version"]), str(table["unit"])
    if unit != GRID_UNIT:
        raise ValueError(f"grid_co2.toml: unit must be {GRID_UNIT}, not {unit}")
    out: dict[str, Factor] = {}
    for entry in table["factor"]:
        key = grid_key(entry["regime"], entry["region"], int(entry["year"]))
        value = float(entry["value"])
        if key in out:
            raise ValueError(f"grid_co2.toml: {key} appears twice")
        if not _PLAUSIBLE[0] <= value <= _PLAUSIBLE[1]:
            raise ValueError(f"grid_co2.toml: {key} = {value} is not a plausible {unit}")
        out[key] = Factor(key, value, unit, str(entry["source"]), str(entry["status"]), version)
    return out


@functools.cache
def coal_factor() -> Factor:
    """The GB/T 2589-2020 electricity 当量值 (kgce/kWh)."""
    table = _read("coal.toml")
    for entry in table["factor"]:
        if entry["basis"] == COAL_BASIS:
            if entry["unit"] != COAL_UNIT:
                raise ValueError(f"coal.toml: unit must be {COAL_UNIT}")
            return Factor(COAL_BASIS, float(entry["value"]), COAL_UNIT, str(entry["source"]),
                          str(entry["status"]), str(table["version"]))
    raise ValueError(f"coal.toml has no {COAL_BASIS} entry")


def available_grid_keys() -> list[str]:
    return sorted(grid_factors())


def grid_problem(regime: str, region: str, year: int) -> str | None:
    """Why ``regime/region/year`` cannot be used, or None if the table has it."""
    if grid_key(regime, region, year) in grid_factors():
        return None
    return (f"no grid CO2 factor for {grid_key(regime, region, year)}; available: "
            + ", ".join(available_grid_keys()))


def select_factors(regime: str, region: str, year: int) -> FactorSet:
    """The factor set for a report; an unknown combination is a ConfigError listing the known."""
    problem = grid_problem(regime, region, year)
    if problem is not None:
        raise ConfigError("[carbon]", [f"At 'carbon': {problem}"])
    return FactorSet(grid_factors()[grid_key(regime, region, year)], coal_factor())
