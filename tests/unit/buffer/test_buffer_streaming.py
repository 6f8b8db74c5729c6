"""begin() streams: a backlog far bigger than one batch is drained with bounded memory."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

from buffer_helpers import SIGNER, FakeClock, readings

from agent.buffer import SqliteBuffer
from nengtan.envelope import seal

CYCLES, PER_CYCLE = 1_000, 200  # 200,000 readings
MAX_READINGS, WINDOW = 5_000, 4
PEAK_LIMIT = 16 * 1024 * 1024


def test_draining_200k_readings_keeps_peak_memory_bounded(tmp_path: Path) -> None:
    clock = FakeClock()
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", clock=clock,
                          sealer=lambda env: seal(SIGNER, env), seal_budget=4 * MAX_READINGS)
    buffer._conn.execute("PRAGMA synchronous=OFF")  # only to build the backlog fast
    for i in range(CYCLES):
        buffer.add(readings(PER_CYCLE, i * PER_CYCLE), taken_ms=clock.wall_ms, time_synced=True)
    clock.advance(24 * 3600)  # a day offline
    backlog_json = len(json.dumps([r.as_wire() for r in readings(PER_CYCLE)])) * CYCLES

    tracemalloc.start()
    started, drained, calls = time.perf_counter(), 0, 0
    try:
        while batch := buffer.begin(max_envelopes=WINDOW, max_readings=MAX_READINGS):
            buffer.end([s.seq for s in batch], [])
            drained += sum(s.readings for s in batch)
            calls += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    print(f"\ndrained {drained} readings in {calls} begin() calls, {elapsed:.1f} s under tracemalloc;"
          f" peak traced memory {peak / 1e6:.1f} MB (backlog as JSON {backlog_json / 1e6:.1f} MB)")
    assert drained == CYCLES * PER_CYCLE
    assert buffer.stats().unsent_readings == 0
    assert peak < PEAK_LIMIT and peak < backlog_json
    buffer.close()
