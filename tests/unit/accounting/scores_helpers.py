"""A plant with a year of stored readings and every scheme file, for the score tests.

The figures are chosen so every score can be worked by hand (statistical regime, 河南 2023:
electricity 0.1229 kgce/kWh and 0.5897 kgCO2/kWh):

- incomer m1 (enterprise): 1000 → 21000 kWh in 2025 = 20 000 kWh
  → 20 000 × 0.1229 = 2 458 kgce = 2.458 tce; 20 000 × 0.5897 = 11 794 kgCO2 = 11.794 tCO2
- line feeder m2 (line1): 0 → 17 500 kWh in 2022, 17 500 → 33 500 kWh in 2025 = 16 000 kWh
  → 2025: 16 000 × 0.1229 = 1 966.4 kgce; 16 000 × 0.5897 = 9 435.2 kgCO2
  → 2022: 17 500 × 0.5897 = 10 319.75 kgCO2
- output.csv: clinker at line1, 20 t in 2022 and 20 t in 2025 (two 10 t records)
- ledger.toml: baseline 2021 = 23.588 tCO2; for 2025 green electricity 0.5 MWh, one 绿证
  (1 MWh), CCER 6 tCO2
- equipment.csv: motors M1 (grade 1), M2 (grade 2), M3 (grade 1) in service, M4 (grade 1)
  retired; fan P1 (grade 0) in service; no transformer
- scheme_inputs.toml: unit product = clinker at line1; process improvement 120 → 108
"""

from __future__ import annotations

from pathlib import Path

from accounting_helpers import Feeder, local_ms, plant_dir

from cloud_receiver.store import Store, open_store

LEDGER = """
[baseline]
year = 2021
emissions_t = 23.588

[[green_electricity]]
id = "GE-2025-1"
for_year = 2025
mwh = 0.5
contract = "河南电力交易中心 2025Q1"

[[certificate]]
id = "GEC-2025-A"
for_year = 2025
count = 1
registry = "国家绿证核发交易系统"
serial_first = "GEC2025000101"
serial_last = "GEC2025000101"
vintage = 2025
retired_on = 2026-01-20

[[offset]]
id = "CCER-1"
kind = "ccer"
for_year = 2025
tco2 = 6.0
registry = "全国温室气体自愿减排注册登记系统"
serial_first = "CN41-0001"
serial_last = "CN41-0006"
vintage = 2024
retired_on = 2026-01-25
"""

OUTPUT = """date,node,shift,product,quantity,unit
2022-03-01,line1,,clinker,20,t
2025-03-01,line1,,clinker,10,t
2025-09-01,line1,,clinker,10,t
"""

EQUIPMENT = """id,name,kind,efficiency_grade,in_service,rated_kw
M1,Kiln fan motor,motor,1,yes,200
M2,Mill motor,motor,2,yes,400
M3,Conveyor motor,motor,1,yes,55
M4,Old motor,motor,1,no,30
P1,Cooling fan,fan_pump,0,yes,75
"""

INPUTS = """
[unit_product]
product = "clinker"
node = "line1"

[2025.super_efficiency.process_improvement]
previous = "120"
current = "108"
source = "2025 节能诊断报告 表 4-2"
"""

PRODUCTS = '[products.clinker]\nbenchmark = "cement_clinker"\n'
END_2025 = local_ms("2026-01-01T00:00")


def feed_years(store: Store) -> None:
    feeder = Feeder(store)
    feeder.add("m1", [(local_ms("2025-01-01T00:00"), 1000.0), (local_ms("2025-06-01T00:00"),
                                                                 11000.0),
                      (local_ms("2025-12-31T00:00"), 21000.0)])
    feeder.add("m2", [(local_ms("2022-01-01T00:00"), 0.0), (local_ms("2022-12-31T00:00"), 17500.0),
                      (local_ms("2025-01-01T00:00"), 17500.0),
                      (local_ms("2025-12-31T00:00"), 33500.0)])


def scheme_plant(root: Path, **files: str) -> Path:
    """The plant directory with every scheme file; ``files`` overrides or adds (name → text,
    an empty text removes the file)."""
    chosen = {"ledger.toml": LEDGER, "output.csv": OUTPUT, "equipment.csv": EQUIPMENT,
              "scheme_inputs.toml": INPUTS, "products.toml": PRODUCTS} | files
    directory = plant_dir(root, extra={k: v for k, v in chosen.items() if v})
    return directory


def receiver_config(root: Path) -> Path:
    """A receiver config whose SQLite store holds ``feed_years``."""
    config = root / "receiver.toml"
    (root / "gateways").mkdir(exist_ok=True)
    config.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n'
                      '[carbon]\nregime = "statistical"\nregion = "henan"\nyear = 2023\n')
    store = open_store(root / "r.db")
    try:
        feed_years(store)
    finally:
        store.close()
    return config
