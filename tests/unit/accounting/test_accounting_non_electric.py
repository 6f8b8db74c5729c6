"""Non-electric metering points end to end: gas, steam, heat and water counters bound in the
sample plant, stored in SQLite the way the ingest stores them, and carried through the monthly
report with the GB/T 2589 and MRV factors of ``cloud_receiver/factors/*.toml``.

Every expected figure is worked out in the comments from the factor tables:

- natural gas (gbt2589.toml, fuels_co2.toml): both tables are per m³ at 0 °C, the meter counts
  m³ at 20 °C, which hold 273.15/293.15 = 0.9317755415 of a 0 °C m³. So 1.2143 × 0.9317755415
  = 1.1314550401 kgce/m3, and CO2 = NCV 389.31 GJ/10⁴Nm³ × CC 15.3 tC/TJ × OF 0.99 × 44/12
  ÷ 10⁴ = 2.162188809 kgCO2/Nm³ × 0.9317755415 = 2.0146746484 kgCO2/m3
- steam: 128.6 kgce/t; 413.93 kgCO2/t (0.11 tCO2/GJ × 3.763 GJ/t)
- heat: 34.12 kgce/GJ; 110.0 kgCO2/GJ
- water: 0.0857 kgce/t; no CO2 (not an emission source)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from accounting_helpers import JULY, JUNE, MINUTE, Feeder

from cloud_receiver.accounting import render
from cloud_receiver.accounting.factors import Choice
from cloud_receiver.accounting.model import ENERGY_TYPES, load_plant
from cloud_receiver.accounting.report import Report, monthly_report
from cloud_receiver.rollups import batch_points
from cloud_receiver.store import Store
from nengtan.envelope import Cycle, Envelope, Reading, decode_batch, encode_payload
from nengtan.errors import ConfigError
from nengtan.measurements import NOT_ACCOUNTED, ROLLED_UP, lookup

SAMPLE = Path(__file__).parents[3] / "cloud_receiver" / "plant.sample"
GATEWAY = "demo-gw01"  # the sample plant's gateway
Q = 15 * MINUTE
HENAN_2023 = Choice("statistical", "henan", 2023)  # the sample plant's [accounting]

POINTS = """
[[point]]
id = "gas-incomer"
name = "Natural gas, site regulator station"
node = "zz-site"
gateway = "demo-gw01"
meter = "gas-main"
measurement = "gas_volume_std"
level = 1
energy_type = "natural_gas"
use = "production"

[[point]]
id = "steam-incomer"
name = "Purchased steam"
node = "zz-site"
gateway = "demo-gw01"
meter = "steam-main"
measurement = "steam_mass"
level = 1
energy_type = "steam"
use = "production"

[[point]]
id = "office-heat"
name = "Office heating"
node = "office"
gateway = "demo-gw01"
meter = "heat-office"
measurement = "heat_energy"
level = 2
energy_type = "heat"
use = "hvac"
"""

#: Fresh water counted in m3 and accounted in t: the model wants the scale spelled out.
WATER = """
[[point]]
id = "water-incomer"
node = "zz-site"
gateway = "demo-gw01"
meter = "water-main"
measurement = "water_volume"
level = 1
energy_type = "water"
use = "production"
"""


def sample_plant(root: Path, extra: str) -> Path:
    """The shipped sample plant with ``extra`` [[point]] tables appended."""
    directory = root / "plant"
    shutil.copytree(SAMPLE, directory)
    with (directory / "plant.toml").open("a", encoding="utf-8") as f:
        f.write(extra)
    return directory


def feed_june(store: Store) -> None:
    """A reading every 15 min from 06-01 00:00 to 07-01 00:00 local (2881 readings, 2880
    intervals) per meter, each series rising steadily."""
    feeder = Feeder(store, GATEWAY)
    for meter, measurement, start, step in (
            ("gas-main", "gas_volume_std", 50_000.0, 2.5),  # 2880 × 2.5 = 7200 m3
            ("steam-main", "steam_mass", 1_000.0, 0.05),  # 2880 × 0.05 = 144 t
            ("heat-office", "heat_energy", 300.0, 0.25),  # 2880 × 0.25 = 720 GJ
            ("water-main", "water_volume", 10_000.0, 1 / 6)):  # 2880 / 6 = 480 m3
        feeder.add(meter, [(JUNE + k * Q, start + k * step) for k in range(2881)], measurement)


@pytest.fixture
def june(store: Store, tmp_path: Path) -> Report:
    feed_june(store)
    plant = load_plant(sample_plant(tmp_path, POINTS + WATER + "scale = 1.0\n"))
    return monthly_report(store, plant, HENAN_2023, 2025, 6, now_ms=JULY + 1)


def test_gas_steam_and_heat_points_carry_tce_and_co2_per_the_factor_tables(june: Report) -> None:
    rows = {p.id: p for p in june.points}
    gas, steam, heat = rows["gas-incomer"], rows["steam-incomer"], rows["office-heat"]
    # Gas: (57 200 − 50 000) m3 = 7200 m3; × 1.1314550401 = 8146.4762886 kgce
    # = 8.1464762886 tce; × 2.0146746484 = 14 505.6574685 kgCO2.
    assert (gas.unit, gas.amount) == ("m3", pytest.approx(7200.0))
    assert gas.kgce / 1000 == pytest.approx(8.1464762886)
    assert gas.kgco2 == pytest.approx(14_505.6574685)
    # Steam: (1144 − 1000) t = 144 t; × 128.6 = 18 518.4 kgce = 18.5184 tce;
    # × 413.93 = 59 605.92 kgCO2.
    assert (steam.unit, steam.amount) == ("t", pytest.approx(144.0))
    assert steam.kgce / 1000 == pytest.approx(18.5184)
    assert steam.kgco2 == pytest.approx(59_605.92)
    # Heat: (1020 − 300) GJ = 720 GJ; × 34.12 = 24 566.4 kgce = 24.5664 tce; × 110 = 79 200 kgCO2.
    assert (heat.unit, heat.amount) == ("GJ", pytest.approx(720.0))
    assert heat.kgce / 1000 == pytest.approx(24.5664)
    assert heat.kgco2 == pytest.approx(79_200.0)
    for point in (gas, steam, heat):
        assert point.completeness == pytest.approx(100.0)
        assert point.reconciled == pytest.approx(point.amount)  # last − first, no events


def test_water_in_m3_is_accounted_in_t_through_its_scale(june: Report) -> None:
    water = next(p for p in june.points if p.id == "water-incomer")
    # 480 m3 × scale 1.0 t/m3 = 480 t; × 0.0857 = 41.136 kgce; water has no CO2 factor.
    assert (water.unit, water.scale, water.amount) == ("t", 1.0, pytest.approx(480.0))
    assert water.kgce == pytest.approx(41.136)
    assert water.kgco2 is None
    assert "water is not an emission source here" in june.conversions["water"].co2_note


def test_the_enterprise_totals_add_the_energy_types_without_mixing_units(june: Report) -> None:
    ent = {n.energy_type: n for n in june.enterprise_rows}
    assert {e: (n.unit, n.points) for e, n in ent.items() if n.amount} == {
        "natural_gas": ("m3", ("gas-incomer",)), "steam": ("t", ("steam-incomer",)),
        "heat": ("GJ", ("office-heat",)), "water": ("t", ("water-incomer",))}
    assert ent["electricity"].amount == 0  # the sample's meters have no readings here
    # 8146.4762886 + 18 518.4 + 24 566.4 + 41.136 = 51 272.4122886 kgce
    assert june.total_kgce == pytest.approx(51_272.4122886)
    # 14 505.6574685 + 59 605.92 + 79 200 = 153 311.5774685 kgCO2 (water adds none)
    assert june.total_kgco2 == pytest.approx(153_311.5774685)


def test_every_format_renders_the_non_electric_rows(june: Report, tmp_path: Path) -> None:
    text = render.render_text(june)
    for needle in ("1.1314550400818693 kgce/m3", "× 273.15/293.15", "128.6 kgce/t",
                   "34.12 kgce/GJ", "kgCO2/GJ", "gas-incomer", "steam-incomer", "office-heat"):
        assert needle in text, needle
    assert "gas-incomer" in render.render_csv(june)
    assert "office-heat" in render.render_html(june)
    (tmp_path / "june.xlsx").write_bytes(render.render_xlsx(june))


def test_a_water_point_in_m3_without_a_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_plant(sample_plant(tmp_path, WATER))
    assert any("point[4].scale" in p and "water_volume counts m3" in p and "accounted in t" in p
               for p in info.value.problems), info.value.problems


def test_a_line_condition_gas_volume_cannot_be_accounted(tmp_path: Path) -> None:
    line_volume = POINTS.replace('"gas_volume_std"', '"gas_volume"')
    with pytest.raises(ConfigError) as info:
        load_plant(sample_plant(tmp_path, line_volume))
    assert any("point[4].measurement" in p and "gas_volume_std" in p
               for p in info.value.problems), info.value.problems


def test_gas_steam_and_heat_counters_count_in_their_energy_types_units_and_water_does_not() -> None:
    for measurement, energy_type in (("gas_volume_std", "natural_gas"), ("steam_mass", "steam"),
                                     ("heat_energy", "heat")):
        assert measurement in ROLLED_UP
        assert lookup(measurement).unit == ENERGY_TYPES[energy_type].unit  # no scale needed
    assert (lookup("water_volume").unit, ENERGY_TYPES["water"].unit) == ("m3", "t")
    assert NOT_ACCOUNTED <= ROLLED_UP and "gas_volume" in NOT_ACCOUNTED


def test_the_wire_carries_non_electric_readings_and_the_ingest_rolls_up_only_counters() -> None:
    cycle = Cycle(1, tuple(Reading("gas-main", name, JUNE, value, "good") for name, value in (
        ("gas_volume_std", 1243.1), ("gas_volume", 320.5), ("volume_flow_std", 2.5),
        ("temperature", 21.6), ("pressure_absolute", 402.0))))
    batch = decode_batch(encode_payload(Envelope(GATEWAY, 1, 1, 1, None, True, (cycle,))))
    assert set(batch_points(batch)) == {("gas-main", "gas_volume_std"), ("gas-main", "gas_volume")}
