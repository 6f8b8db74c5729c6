"""Conversion factors for every energy type: standard coal (GB/T 2589-2020) and CO2 by regime.

Extends ``cloud_receiver.carbon`` (grid CO2 and the electricity 当量值, which it keeps serving to
the daily report unchanged) with the other energy types, the electricity 等价值 by year, fuel
combustion CO2 computed as NCV × CC × OF × 44/12 from its published parameters, purchased heat,
and the product-footprint grid factors. The numbers are data in ``cloud_receiver/factors/*.toml``
with a unit, source, status and table version; every figure a report prints carries the
``Factor`` it was multiplied by. Regimes are never mixed: a footprint report gets footprint grid
factors and no fuel CO2 (no published CO2e combustion factors here), rather than a blend.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import date

from cloud_receiver import carbon
from cloud_receiver.accounting.model import ENERGY_TYPES
from nengtan.errors import ConfigError

REGIMES: tuple[str, ...] = ("carbon_market", "statistical", "product_footprint")
BASES: tuple[str, ...] = ("calorific_equivalent", "primary_equivalent")
C_TO_CO2 = 44 / 12
#: A metered m³ of gas (``gas_volume_std``, energy type ``natural_gas``) is at 20 °C and
#: 101.325 kPa, the reference of Chinese gas trade metering (GB/T 19205). Factor tables quote
#: gas per m³ at their own reference (``volume_reference_c``; the carbon guidelines' Nm³ is at
#: 0 °C): at equal pressure a 20 °C m³ holds (273.15 + ref) / 293.15 of a reference m³.
METERED_GAS_K = 293.15


def to_metered_m3(entry: dict[str, object]) -> tuple[float, str]:
    """The ratio that turns a factor per reference m³ into one per metered m³, and how to
    say so in its source; (1, "") for entries without a gas volume reference."""
    ref = entry.get("volume_reference_c")
    if ref is None:
        return 1.0, ""
    if not isinstance(ref, int | float) or isinstance(ref, bool):
        raise ValueError(f"volume_reference_c must be a number, not {ref!r}")
    kelvin = 273.15 + float(ref)
    return kelvin / METERED_GAS_K, (f" × {kelvin:g}/{METERED_GAS_K:g} (the table's m³ is at "
                                    f"{ref:g} °C, a metered m³ at 20 °C, both 101.325 kPa)")


@dataclass(frozen=True)
class Factor:
    """One published factor, where it comes from, and when it applies."""

    key: str  # e.g. "gbt2589/diesel", "grid/statistical/henan/2023", "fuel/natural_gas"
    value: float
    unit: str
    source: str
    status: str  # V verified, C corroborated, U unverified (standards.md)
    table_version: str  # "<table file>@<version>"
    effective_from: date | None = None
    effective_to: date | None = None  # exclusive

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "value": self.value, "unit": self.unit, "source": self.source,
                "status": self.status, "table_version": self.table_version,
                "effective_from": self.effective_from.isoformat() if self.effective_from else None,
                "effective_to": self.effective_to.isoformat() if self.effective_to else None}

    def applies_on(self, day: date) -> bool:
        return ((self.effective_from is None or self.effective_from <= day)
                and (self.effective_to is None or day < self.effective_to))


@dataclass(frozen=True)
class Choice:
    """The factor selection of one report."""

    regime: str
    region: str
    year: int  # data year of the grid factor (and of the 等价值)
    electricity_basis: str = "calorific_equivalent"


@dataclass(frozen=True)
class Conversion:
    """How one energy type becomes kgce and kgCO2: amount × ``kgce.value`` and amount ×
    ``co2.value``. ``co2`` is None when the regime has no factor for it; ``co2_note`` says why."""

    energy_type: str
    unit: str
    kgce: Factor
    co2: Factor | None
    co2_note: str = ""


def _from_carbon(f: carbon.Factor, key: str, table: str) -> Factor:
    return Factor(key, f.value, f.unit, f.source, f.status, f"{table}@{f.table_version}")


@functools.cache
def coefficients() -> dict[str, list[Factor]]:
    """GB/T 2589 coefficients per energy type (several when effective periods differ)."""
    table = carbon._read("gbt2589.toml")
    version = f"gbt2589.toml@{table['version']}"
    out: dict[str, list[Factor]] = {}
    for e in table["coefficient"]:
        etype = str(e["energy_type"])
        unit = f"kgce/{ENERGY_TYPES[etype].unit}"
        if e["unit"] != unit:
            raise ValueError(f"gbt2589.toml: {etype} must be in {unit}, not {e['unit']}")
        ratio, how = to_metered_m3(e)
        out.setdefault(etype, []).append(Factor(
            f"gbt2589/{etype}", float(e["value"]) * ratio, unit, f"{e['source']}{how}",
            str(e["status"]), version, e.get("effective_from"), e.get("effective_to")))
    coal = carbon.coal_factor()
    out["electricity"] = [Factor("gbt2589/electricity/calorific_equivalent", coal.value,
                                 coal.unit, coal.source, coal.status,
                                 f"coal.toml@{coal.table_version}", date(2021, 4, 1))]
    return out


@functools.cache
def electricity_primary() -> dict[int, Factor]:
    """Electricity 等价值 by year (the national coal rate for power supply)."""
    table = carbon._read("gbt2589.toml")
    version = f"gbt2589.toml@{table['version']}"
    return {int(e["year"]): Factor(f"gbt2589/electricity/primary_equivalent/{e['year']}",
                                   float(e["value"]), str(e["unit"]), str(e["source"]),
                                   str(e["status"]), version)
            for e in table.get("electricity_primary", [])}


def fuel_co2_per_unit(ncv: float, cc: float, oxidation: float, *, per_1e4_m3: bool) -> float:
    """kgCO2 per t (NCV in GJ/t) or per m³ (NCV in GJ/10⁴Nm³): GJ × tC/TJ = kgC."""
    kgc = ncv * cc * oxidation
    return kgc * C_TO_CO2 / (10_000 if per_1e4_m3 else 1)


@functools.cache
def combustion() -> dict[str, Factor]:
    """Direct (fuel) and purchased-heat CO2 factors per energy type, in kgCO2 per its unit."""
    table = carbon._read("fuels_co2.toml")
    version = f"fuels_co2.toml@{table['version']}"
    out: dict[str, Factor] = {}
    for f in table["fuel"]:
        etype = str(f["energy_type"])
        gas = f["ncv_unit"] == "GJ/1e4Nm3"
        ratio, reference = to_metered_m3(f)
        value = ratio * fuel_co2_per_unit(float(f["ncv"]), float(f["cc"]), float(f["of"]),
                                          per_1e4_m3=gas)
        how = (f"NCV {f['ncv']} {f['ncv_unit']} × CC {f['cc']} tC/TJ × OF {f['of']} × 44/12"
               + (" ÷ 10⁴" if gas else "") + reference)
        out[etype] = Factor(f"fuel/{etype}", value, f"kgCO2/{ENERGY_TYPES[etype].unit}",
                            f"{how}; {f['source']}", str(f["status"]), version)
    for h in table["heat"]:
        etype = str(h["energy_type"])
        out[etype] = Factor(f"heat/{etype}", float(h["value"]), str(h["unit"]), str(h["source"]),
                            str(h["status"]), version)
    return out


@functools.cache
def footprint_grid() -> dict[str, Factor]:
    table = carbon._read("grid_footprint.toml")
    version = f"grid_footprint.toml@{table['version']}"
    return {f"{e['region']}/{e['year']}": Factor(
        f"grid/product_footprint/{e['region']}/{e['year']}", float(e["value"]),
        str(table["unit"]), str(e["source"]), str(e["status"]), version)
        for e in table["factor"]}


def grid_factor(regime: str, region: str, year: int) -> Factor | str:
    """The grid factor of a regime, or why there is none (with the known keys)."""
    if regime == "product_footprint":
        known = footprint_grid()
        if f"{region}/{year}" in known:
            return known[f"{region}/{year}"]
        return (f"no product_footprint grid factor for {region}/{year}; available: "
                + ", ".join(sorted(known)))
    problem = carbon.grid_problem(regime, region, year)
    if problem is not None:
        return problem
    f = carbon.grid_factors()[carbon.grid_key(regime, region, year)]
    return _from_carbon(f, f"grid/{f.key}", "grid_co2.toml")


def kgce_factor(energy_type: str, on: date, choice: Choice) -> Factor | str:
    """The standard-coal coefficient of ``energy_type`` for a period starting ``on``."""
    if energy_type == "electricity" and choice.electricity_basis == "primary_equivalent":
        years = electricity_primary()
        if choice.year in years:
            return years[choice.year]
        return (f"no electricity 等价值 for {choice.year}; available years: "
                + ", ".join(str(y) for y in sorted(years)))
    candidates = [f for f in coefficients().get(energy_type, []) if f.applies_on(on)]
    if not candidates:
        return f"no GB/T 2589 coefficient for {energy_type} effective on {on.isoformat()}"
    return candidates[0]


def conversion(energy_type: str, on: date, choice: Choice) -> Conversion | str:
    """The conversion of one energy type, or a message saying what is missing."""
    kgce = kgce_factor(energy_type, on, choice)
    if isinstance(kgce, str):
        return kgce
    unit = ENERGY_TYPES[energy_type].unit
    if energy_type == "electricity":
        grid = grid_factor(choice.regime, choice.region, choice.year)
        return grid if isinstance(grid, str) else Conversion(energy_type, unit, kgce, grid)
    if energy_type == "water":
        return Conversion(energy_type, unit, kgce, None, "water is not an emission source here")
    if choice.regime == "product_footprint":
        return Conversion(energy_type, unit, kgce, None,
                          "no CO2e footprint factor for this energy type in the tables")
    co2 = combustion().get(energy_type)
    if co2 is None:
        return Conversion(energy_type, unit, kgce, None, f"no CO2 factor for {energy_type}")
    return Conversion(energy_type, unit, kgce, co2)


def conversions(energy_types: set[str] | frozenset[str], on: date,
                choice: Choice) -> dict[str, Conversion]:
    """Conversions for the given energy types; any that cannot be resolved is a ConfigError
    listing every such problem (a report never runs with a factor silently missing)."""
    problems: list[str] = []
    if choice.regime not in REGIMES:
        problems.append(f"At 'regime': {choice.regime!r} is not one of {', '.join(REGIMES)}")
    if choice.electricity_basis not in BASES:
        problems.append(f"At 'electricity_basis': {choice.electricity_basis!r} is not one of "
                        + ", ".join(BASES))
    out: dict[str, Conversion] = {}
    if not problems:
        for etype in sorted(energy_types):
            c = conversion(etype, on, choice)
            if isinstance(c, str):
                problems.append(f"At '{etype}': {c}")
            else:
                out[etype] = c
    if problems:
        raise ConfigError("[accounting] factors", problems)
    return out


def round_half_even(value: float, decimals: int) -> float:
    """Reports round once, at the end; kept here so every renderer rounds alike."""
    return round(value, decimals) if math.isfinite(value) else value
