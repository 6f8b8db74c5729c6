"""Builders for the accounting tests: a tiny plant directory and counter data stored the way the
ingest stores it (counter points + incrementally corrected rollups), without sockets or keys.
Imported by name (this folder has no __init__.py, so pytest puts it on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from cloud_receiver.rollups import chain_deltas, merge
from cloud_receiver.store import CounterPoint, Store

GATEWAY = "gw-acc-01"
TZ = ZoneInfo("Asia/Shanghai")
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def local_ms(text: str) -> int:
    """Unix ms of a local (Asia/Shanghai) time such as ``2025-06-01T00:00``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp() * 1000)


JUNE = local_ms("2025-06-01T00:00")  # 2025-05-31T16:00:00Z
JULY = local_ms("2025-07-01T00:00")

#: A five-level hierarchy and two electricity points: the site incomer (level 1, meter m1) and
#: the line feeder below it (level 2, meter m2).
PLANT_TOML = f"""
[plant]
name = "Test works"
timezone = "Asia/Shanghai"

[accounting]
regime = "statistical"
region = "henan"
year = 2023

[[node]]
id = "ent"
kind = "enterprise"
name = "Test Co."

[[node]]
id = "site1"
kind = "site"
parent = "ent"

[[node]]
id = "ws1"
kind = "workshop"
parent = "site1"

[[node]]
id = "line1"
kind = "line"
parent = "ws1"

[[node]]
id = "press1"
kind = "equipment"
parent = "line1"

[[point]]
id = "incomer"
node = "site1"
gateway = "{GATEWAY}"
meter = "m1"
level = 1
energy_type = "electricity"
use = "production"

[[point]]
id = "line1-feeder"
node = "line1"
gateway = "{GATEWAY}"
meter = "m2"
level = 2
energy_type = "electricity"
use = "production"
parent = "incomer"
"""


def plant_dir(root: Path, plant_toml: str = PLANT_TOML, *, replacements: str | None = None,
              extra: dict[str, str] | None = None) -> Path:
    """Write a plant data directory under ``root`` and return it; ``extra`` maps further file
    names to their text (other modules' files: output.csv, shifts.toml, ...)."""
    directory = root / "plant"
    directory.mkdir(exist_ok=True)
    (directory / "plant.toml").write_text(plant_toml, encoding="utf-8")
    if replacements is not None:
        (directory / "replacements.toml").write_text(replacements, encoding="utf-8")
    for name, text in (extra or {}).items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


class Feeder:
    """Stores counter readings per series with consecutive seqs (one gateway epoch), through
    the same rollup path the ingest uses, so rollups equal what a real ingest would hold."""

    def __init__(self, store: Store, gateway: str = GATEWAY) -> None:
        self.store, self.gateway = store, gateway
        self.seq = 0

    def add(self, meter: str, readings: Sequence[tuple[int, float]],
            measurement: str = "active_energy_import") -> None:
        """``readings`` = (ts_ms, value) in gateway order."""
        if not readings:
            return
        first = self.seq + 1
        points = [CounterPoint(meter, measurement, 1, first + i, ts, v)
                  for i, (ts, v) in enumerate(readings)]
        self.seq += len(points)
        with self.store.transaction(lock=self.gateway) as txn:
            near = txn.counter_neighbours(self.gateway, 1, first, self.seq, [(meter, measurement)])
            before, after = near.get((meter, measurement), (None, None))
            txn.add_counter_points(self.gateway, points)
            txn.adjust_rollups(self.gateway, merge(chain_deltas(before, points, after, TZ)))

    def steady(self, meter: str, start_ms: int, end_ms: int, step_ms: int, start_value: float,
               per_step: float) -> float:
        """Readings every ``step_ms`` from ``start_ms`` to ``end_ms`` inclusive, rising by
        ``per_step``; return the last value."""
        n = (end_ms - start_ms) // step_ms
        self.add(meter, [(start_ms + i * step_ms, start_value + i * per_step)
                         for i in range(n + 1)])
        return start_value + n * per_step
