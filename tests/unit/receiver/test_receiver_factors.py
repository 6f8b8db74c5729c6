"""The factor tables hold the published values, with units and sources (standards.md §1, §2)."""

from __future__ import annotations

import pytest

from cloud_receiver.carbon import coal_factor, grid_factors, select_factors
from nengtan.errors import ConfigError


@pytest.mark.parametrize(("key", "value"), [
    ("statistical/national/2021", 0.5568), ("statistical/national/2022", 0.5366),
    ("statistical/national/2023", 0.5306), ("statistical/central/2023", 0.5271),
    ("statistical/henan/2021", 0.6369), ("statistical/henan/2022", 0.6058),
    ("statistical/henan/2023", 0.5897), ("carbon_market/national/2021", 0.5810),
    ("carbon_market/national/2022", 0.5703),
])
def test_the_grid_table_holds_the_published_value(key: str, value: float) -> None:
    assert grid_factors()[key].value == value


def test_every_grid_factor_has_a_unit_source_and_status() -> None:
    regions = {k.split("/")[1] for k in grid_factors()}
    assert {"north", "northeast", "east", "central", "northwest", "south", "southwest"} <= regions
    for factor in grid_factors().values():
        assert factor.unit == "kgCO2/kWh"  # == tCO2/MWh; never 0.0005703-style slips
        assert 0.1 < factor.value < 1.0
        assert factor.source and factor.status in ("V", "C")


def test_the_electricity_coal_coefficient_is_the_gb_t_2589_calorific_equivalent() -> None:
    coal = coal_factor()
    assert (coal.value, coal.unit) == (0.1229, "kgce/kWh")
    assert "GB/T 2589-2020" in coal.source


def test_the_default_selection_is_henan_2023() -> None:
    assert select_factors("statistical", "henan", 2023).grid_co2.value == 0.5897


def test_a_footprint_factor_cannot_be_selected() -> None:
    with pytest.raises(ConfigError):
        select_factors("product_footprint", "national", 2024)
