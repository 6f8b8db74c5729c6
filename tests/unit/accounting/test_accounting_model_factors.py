"""The plant model loader (every problem at once, with its path) and the factor tables (golden)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from accounting_helpers import PLANT_TOML, plant_dir

from cloud_receiver.accounting import factors
from cloud_receiver.accounting.factors import Choice, conversions, fuel_co2_per_unit
from cloud_receiver.accounting.model import load_plant
from nengtan.errors import ConfigError

JUNE_2025 = date(2025, 6, 1)


def test_sample_plant_loads(plant_path: Path) -> None:
    plant = load_plant(plant_path)
    assert plant.enterprise.id == "ent"
    assert [n.id for n in plant.ancestors("press1")] == ["press1", "line1", "ws1", "site1", "ent"]
    assert [p.id for p in plant.points_under("ws1")] == ["line1-feeder"]
    assert plant.points["line1-feeder"].parent == "incomer"
    assert plant.accounting is not None and plant.accounting.region == "henan"


def test_every_problem_is_reported_with_its_path(tmp_path: Path) -> None:
    bad = PLANT_TOML.replace('level = 2', 'level = 4').replace(
        'energy_type = "electricity"\nuse = "production"\nparent',
        'energy_type = "steam"\nuse = "brewing"\nparent').replace(
        'kind = "line"', 'kind = "site"')
    with pytest.raises(ConfigError) as err:
        load_plant(plant_dir(tmp_path, bad))
    text = str(err.value)
    assert "plant.toml" in text
    for expected in ("point[1].level", "point[1].use", "point[1].scale",
                     "node[line1].parent"):
        assert f"At '{expected}'" in text, expected


def test_a_series_bound_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already bound"):
        load_plant(plant_dir(tmp_path, PLANT_TOML.replace('meter = "m2"', 'meter = "m1"')))


def test_replacement_without_offset_is_refused(tmp_path: Path) -> None:
    record = ('[[replacement]]\npoint = "incomer"\nat = 2025-06-15T10:05:00\n'
              'old_final = 1.0\nnew_initial = 0.0\n')
    with pytest.raises(ConfigError, match="UTC offset") as err:
        load_plant(plant_dir(tmp_path, replacements=record))
    assert "replacements.toml" in str(err.value)


def test_fuel_co2_golden() -> None:
    # diesel: 42.652 GJ/t × 20.2 tC/TJ × 0.98 × 44/12 = 3095.90 kgCO2/t (standards.md: 3.0959 t/t)
    assert fuel_co2_per_unit(42.652, 20.2, 0.98, per_1e4_m3=False) == pytest.approx(
        42.652 * 20.2 * 0.98 * 44 / 12)
    assert factors.combustion()["diesel"].value == pytest.approx(3095.9, abs=0.05)
    # natural gas: 389.31 GJ/10⁴Nm³ × 15.3 × 0.99 × 44/12 ÷ 10⁴ = 2.162188809 kgCO2 per Nm³
    # (0 °C); a metered m³ (20 °C) holds 273.15/293.15 = 0.931775542 Nm³: 2.014674648 kgCO2/m³
    gas = factors.combustion()["natural_gas"]
    assert gas.value == pytest.approx(2.014674648, abs=5e-9)
    assert "273.15/293.15" in gas.source and gas.unit == "kgCO2/m3"
    # bituminous coal for raw coal: 19.570 × 26.1 × 0.93 × 44/12 = 1741.7 kgCO2/t
    assert factors.combustion()["raw_coal"].value == pytest.approx(1741.7, abs=0.05)


def test_conversions_for_a_henan_statistical_report() -> None:
    c = conversions({"electricity", "natural_gas", "heat", "water"}, JUNE_2025,
                    Choice("statistical", "henan", 2023))
    assert (c["electricity"].kgce.value, c["electricity"].co2 and c["electricity"].co2.value) == (
        0.1229, 0.5897)
    assert c["electricity"].co2 is not None
    assert c["electricity"].co2.table_version.startswith("grid_co2.toml@")
    # 1.2143 kgce per m³ at 0 °C × 273.15/293.15 = 1.131455040 kgce per metered (20 °C) m³
    assert c["natural_gas"].kgce.value == pytest.approx(1.131455040, abs=5e-10)
    assert c["heat"].kgce.value == 34.12
    assert c["heat"].co2 is not None and c["heat"].co2.value == 110.0  # 0.11 tCO2/GJ
    assert c["water"].co2 is None and "not an emission" in c["water"].co2_note
    # 1000 kWh → 1000 × 0.1229 = 122.9 kgce and 1000 × 0.5897 = 589.7 kgCO2
    assert 1000 * c["electricity"].kgce.value == pytest.approx(122.9)


def test_regimes_are_never_mixed() -> None:
    fp = conversions({"electricity", "diesel"}, JUNE_2025,
                     Choice("product_footprint", "national", 2024))
    assert fp["electricity"].co2 is not None and fp["electricity"].co2.value == 0.5777
    assert fp["electricity"].co2.unit == "kgCO2e/kWh"
    assert fp["diesel"].co2 is None  # no CO2e combustion factor: absent, not borrowed
    market = conversions({"electricity"}, JUNE_2025, Choice("carbon_market", "national", 2022))
    assert market["electricity"].co2 is not None and market["electricity"].co2.value == 0.5703


def test_primary_equivalent_needs_a_published_year() -> None:
    with pytest.raises(ConfigError, match="no electricity 等价值 for 2023"):
        conversions({"electricity"}, JUNE_2025,
                    Choice("statistical", "henan", 2023, "primary_equivalent"))


def test_unknown_factor_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as err:
        conversions({"electricity"}, date(2020, 1, 1), Choice("statistical", "mars", 2023))
    # the electricity coefficient is looked up first; the date is before GB/T 2589-2020
    assert "effective on 2020-01-01" in str(err.value)
    with pytest.raises(ConfigError, match="no grid CO2 factor for statistical/mars/2023"):
        conversions({"electricity"}, JUNE_2025, Choice("statistical", "mars", 2023))
    with pytest.raises(ConfigError, match="available years: 2020, 2024"):
        conversions({"electricity"}, JUNE_2025,
                    Choice("statistical", "henan", 2023, "primary_equivalent"))
