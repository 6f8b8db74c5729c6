"""Fixtures for hardware-in-the-loop tests: the real daemons on an emulated RS-485 bus.

Set NENGTAN_HW_PORT to a real serial device to run the meter tests against a real adapter; the
end-to-end tests here always use the emulator, whose ground truth they compare against.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cloud_receiver.energy import daily_energy
from cloud_receiver.store import open_store
from nengtan.measurements import ENERGY_IMPORT
from nengtan.stack import Stack
from tests.helpers import mosquitto_binary


def require_mosquitto() -> None:
    """Fail in CI, skip elsewhere, when Mosquitto is missing; put /usr/sbin on PATH for it."""
    mosquitto_binary()
    if "/usr/sbin" not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] += os.pathsep + "/usr/sbin"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require_mosquitto()
    chain = Stack(tmp_path, interval_s=1.0, speedup=600.0, broker_kind="mosquitto")
    try:
        yield chain
    finally:
        chain.close()


def receiver_energy(stack: Stack) -> dict[str, float]:
    """kWh per meter, summed over every interval the receiver has stored (full precision)."""
    if not stack.receiver_db.exists():
        return {}
    store = open_store(stack.receiver_db, create=False)
    try:
        result = daily_energy(store.counter_samples(ENERGY_IMPORT), ZoneInfo("Asia/Shanghai"))
    finally:
        store.close()
    totals: dict[str, float] = {}
    for day in result.days:
        totals[day.meter] = totals.get(day.meter, 0.0) + day.kwh
    return totals


def truth_energy(stack: Stack) -> dict[str, float]:
    """kWh per meter the emulator served between its first and last energy read."""
    return {meter: t["last"] - t["first"] for meter, t in stack.truth().items() if t["count"] > 1}


def energies_match(stack: Stack) -> bool:
    truth, stored = truth_energy(stack), receiver_energy(stack)
    # Both sides are differences of the same float32 counter values; only float64 summation
    # noise (~1e-12 kWh) may separate them.
    return set(truth) == set(stored) and all(
        math.isclose(stored[m], truth[m], rel_tol=0, abs_tol=1e-9) for m in truth)


def agent_cycle_sizes(stack: Stack) -> dict[int, int]:
    """Readings per committed cycle, from the agent's buffer."""
    path = stack.workdir / "gateway" / "state" / "buffer.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return {int(seq): int(n) for seq, n in conn.execute("SELECT seq, n FROM cycles")}


def receiver_cycle_sizes(stack: Stack) -> dict[int, int]:
    """Readings stored per cycle seq at the receiver (its primary key forbids duplicates, so a
    count above the agent's would mean a reading stored under two keys)."""
    with sqlite3.connect(f"file:{stack.receiver_db}?mode=ro", uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT seq, COUNT(*) FROM readings GROUP BY seq").fetchall()
    return {int(seq): int(n) for seq, n in rows}
