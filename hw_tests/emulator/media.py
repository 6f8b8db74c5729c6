"""Plant-like values of non-electric meters: a saturated-steam line, a gas supply, a water main.

As with power and energy, a flow follows a smooth daily profile around a mean and its counter is
the flow's exact integral, so a counter matches any polling pattern; served flows carry 1 % sensor
noise, counters none. Which medium a meter carries is read from the measurements its model maps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from agent.meters import MeterModel

Noise = Callable[[float, float], float]  # random.gauss(mu, sigma)
_DAY_H = 24.0
_OMEGA_H = 2 * math.pi / _DAY_H  # per hour: flows are per hour, the clock is in seconds
ATMOSPHERE_KPA = 101.325
T_REF_K = 293.15  # 20 °C: the reference of gas_volume_std (nengtan/measurements.py, GB/T 19205)
#: Steam line design pressure, absolute (0.8 MPa; 698.675 kPa gauge).
STEAM_P_ABS_KPA = 800.0
#: Specific enthalpy of saturated steam at 800 kPa abs, 2768.3 kJ/kg (IAPWS-IF97 steam tables,
#: e.g. Çengel & Boles, Thermodynamics, Table A-5: 800 kPa, Tsat 170.41 °C, hg 2768.3 kJ/kg),
#: counted from liquid water at the triple point, as steam tables are. Fixed, as a meter set up
#: for its design pressure counts: hg moves under 0.2 % over the ±50 kPa the line swings.
#: (The MRV heat convention, mass × (h − 83.74 kJ/kg), would give 3 % less.)
STEAM_ENTHALPY_GJ_PER_T = 2.7683
STEAM_MEASUREMENTS = frozenset({"steam_mass", "mass_flow", "heat_energy", "heat_power"})
GAS_MEASUREMENTS = frozenset({"gas_volume_std", "gas_volume", "volume_flow_std"})
WATER_MEASUREMENTS = frozenset({"water_volume"})

# IAPWS-IF97 region 4, the saturation-temperature equation (IAPWS R7-97(2012), eq. 31).
_N = (0.0, 0.11670521452767e4, -0.72421316598842e6, -0.17073846940092e2, 0.12020824702470e5,
      -0.32325550322333e7, 0.14915108613530e2, -0.48232657361591e4, 0.40511340542057e6,
      -0.23855557567849, 0.65017534844798e3)


def saturation_temperature_c(p_abs_kpa: float) -> float:
    """Boiling point of water at ``p_abs_kpa`` (IAPWS-IF97; 99.97 °C at 101.325 kPa)."""
    n = _N
    b = math.sqrt(math.sqrt(p_abs_kpa / 1000.0))  # β = (p / 1 MPa)^¼
    e = b * b + n[3] * b + n[6]
    f = n[1] * b * b + n[4] * b + n[7]
    g = n[2] * b * b + n[5] * b + n[8]
    d = 2 * g / (-f - math.sqrt(f * f - 4 * e * g))
    return (n[10] + d - math.sqrt((n[10] + d) ** 2 - 4 * (n[9] + n[10] * d))) / 2 - 273.15


@dataclass(frozen=True)
class Profile:
    """A flow per hour with a daily and a half-daily swing around ``mean``."""

    mean: float
    a1: float
    a2: float
    phi1: float
    phi2: float

    @classmethod
    def draw(cls, rng: random.Random, mean: float) -> Profile:
        return cls(mean, rng.uniform(0.25, 0.45), rng.uniform(0.05, 0.2),
                   rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi))

    def rate(self, t: float) -> float:
        """The flow at ``t`` emulated seconds, per hour."""
        h = t / 3600.0
        return self.mean * (1 + self.a1 * math.sin(_OMEGA_H * h + self.phi1)
                            + self.a2 * math.sin(2 * _OMEGA_H * h + self.phi2))

    def total(self, t: float) -> float:
        """Exact integral of ``rate`` from 0 to ``t`` seconds (flow units × hours)."""
        h = t / 3600.0
        return self.mean * (
            h + self.a1 / _OMEGA_H * (math.cos(self.phi1) - math.cos(_OMEGA_H * h + self.phi1))
            + self.a2 / (2 * _OMEGA_H)
            * (math.cos(self.phi2) - math.cos(2 * _OMEGA_H * h + self.phi2)))


class Medium:
    """What a non-electric meter measures; ``values`` is one consistent sample at ``t``."""

    def values(self, t: float, noise: Noise) -> dict[str, float]:
        raise NotImplementedError


class SteamLine(Medium):
    """Saturated steam: mass flow (t/h) on a load profile; the line pressure droops with load and
    the temperature is the saturation temperature of the pressure served, as the TVA infers it.
    Both totals started together, so heat_energy = steam_mass × the enthalpy at all times."""

    def __init__(self, rng: random.Random) -> None:
        self.profile = Profile.draw(rng, rng.uniform(2.0, 8.0))
        self.mass0 = rng.uniform(1_000.0, 50_000.0)
        self.enthalpy = STEAM_ENTHALPY_GJ_PER_T

    def values(self, t: float, noise: Noise) -> dict[str, float]:
        rate = self.profile.rate(t)
        flow = rate * (1 + noise(0, 0.01))
        p_abs = STEAM_P_ABS_KPA - 40.0 * (rate / self.profile.mean - 1) + noise(0, 1.0)
        mass = self.mass0 + self.profile.total(t)
        return {
            "mass_flow": flow,
            "heat_power": flow * self.enthalpy * 1e6 / 3600,  # t/h × GJ/t = GJ/h; 1 GJ/h = 277.8 kW
            "pressure_absolute": p_abs,
            "pressure_gauge": p_abs - ATMOSPHERE_KPA,
            "temperature": saturation_temperature_c(p_abs),
            "steam_mass": mass,
            "heat_energy": mass * self.enthalpy,
        }


class GasSupply(Medium):
    """Natural gas behind a regulator: standard flow (m³/h at 20 °C, 101.325 kPa) on a load
    profile, at a line pressure and temperature that hold steady, so the corrector's line
    volume is a fixed multiple of its standard volume: V_line = V_std × (p_ref / p_abs) ×
    (T_line / T_ref). Both totals started together. Served temperature and pressure carry only
    sensor noise, which the conversion, done on the true line state, does not see."""

    def __init__(self, rng: random.Random) -> None:
        self.profile = Profile.draw(rng, rng.uniform(60.0, 400.0))
        self.std0 = rng.uniform(10_000.0, 500_000.0)
        self.p_gauge = rng.uniform(100.0, 400.0)  # kPa: a medium-pressure distribution line
        self.t_line = rng.uniform(5.0, 25.0)  # °C
        self.line_factor = line_factor(self.p_gauge + ATMOSPHERE_KPA, self.t_line)

    def values(self, t: float, noise: Noise) -> dict[str, float]:
        flow_std = self.profile.rate(t) * (1 + noise(0, 0.01))
        std = self.std0 + self.profile.total(t)
        p_noise = noise(0, 0.2)
        return {
            "volume_flow_std": flow_std,
            "volume_flow": flow_std * self.line_factor,
            "gas_volume_std": std,
            "gas_volume": std * self.line_factor,
            "temperature": self.t_line + noise(0, 0.05),
            "pressure_gauge": self.p_gauge + p_noise,
            "pressure_absolute": self.p_gauge + ATMOSPHERE_KPA + p_noise,
        }


class WaterMain(Medium):
    """Cold water: volume flow (m³/h) on a load profile, the volume its integral."""

    def __init__(self, rng: random.Random) -> None:
        self.profile = Profile.draw(rng, rng.uniform(2.0, 20.0))
        self.volume0 = rng.uniform(1_000.0, 100_000.0)

    def values(self, t: float, noise: Noise) -> dict[str, float]:
        return {
            "volume_flow": self.profile.rate(t) * (1 + noise(0, 0.01)),
            "water_volume": self.volume0 + self.profile.total(t),
            "temperature": 15.0 + noise(0, 0.05),
            "pressure_gauge": 300.0 + noise(0, 0.5),
        }


def line_factor(p_abs_kpa: float, t_line_c: float) -> float:
    """Line m³ per standard m³ (ideal gas): (p_ref / p_abs) × (T_line / T_ref)."""
    return (ATMOSPHERE_KPA / p_abs_kpa) * ((t_line_c + 273.15) / T_REF_K)


def medium_for(model: MeterModel, seed: int) -> Medium | None:
    """The medium a model's counters belong to; None for an electrical meter. A model mapping
    steam, gas and water names at once is taken as the first of these."""
    mapped = set(model.points)
    rng = random.Random(f"medium {seed}")  # not the electrical profile's, which must not move
    if mapped & STEAM_MEASUREMENTS:
        return SteamLine(rng)
    if mapped & GAS_MEASUREMENTS:
        return GasSupply(rng)
    if mapped & WATER_MEASUREMENTS:
        return WaterMain(rng)
    return None
