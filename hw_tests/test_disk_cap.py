"""The buffer's disk cap under drop_oldest: what is dropped is declared, signed, and the receiver's
missing-range report shows exactly that, and nothing else."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

from agent.buffer import SqliteBuffer
from agent.config import load_config
from agent.identity import load_signer
from nengtan.envelope import Reading, seal
from nengtan.stack import Stack

CAP_MB = 1


def _prefill(stack: Stack, cycles: int) -> None:
    """Cycles collected while the uplink was away (a day of a 10-meter plant, compressed)."""
    config = load_config(stack.agent_config)
    signer = load_signer(config.gateway.key_file)
    config.gateway.state_dir.mkdir(parents=True, exist_ok=True)
    buffer = SqliteBuffer(config.gateway.state_dir / "buffer.db", gateway=config.gateway.id,
                          sealer=lambda env: seal(signer, env), max_bytes=CAP_MB * 1024 * 1024)
    try:
        for c in range(cycles):
            ts = 1_763_700_000_000 + c * 10_000
            buffer.add([Reading(f"old-{m}", "active_power_total", ts, 1000.0 + c + m, "good")
                        for m in range(40)], taken_ms=ts, time_synced=True)
    finally:
        buffer.close()


class AgentGaps:
    """The gap records in the agent's buffer, accumulated over time: a delivered record goes
    with its envelope when the cap deletes sent history, so we must look while it is there."""

    def __init__(self, stack: Stack) -> None:
        self.path = stack.workdir / "gateway" / "state" / "buffer.db"
        self.seen: set[tuple[int, int]] = set()

    def last_committed(self) -> int:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10) as conn:
            return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM cycles").fetchone()[0])

    def look(self) -> list[tuple[int, int]]:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10) as conn:
            rows = conn.execute("SELECT first, last, reason FROM gaps").fetchall()
        assert {r[2] for r in rows} <= {"disk_cap"}
        self.seen |= {(int(a), int(b)) for a, b, _ in rows}
        return _merge(list(self.seen))


def _receiver_ranges(stack: Stack) -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "nengtan", "receiver", "gaps", "--config",
                           str(stack.receiver_config), "--json"], capture_output=True, text=True)
    if done.returncode != 0:  # the receiver has not created its database yet
        return []
    doc = json.loads(done.stdout)
    return [r for stream in doc["streams"] for r in stream["ranges"]]


def test_drop_oldest_declares_exactly_what_the_receiver_reports_missing(stack: Stack) -> None:
    stack.gateway_settings = {"buffer_max_mb": CAP_MB, "buffer_full_policy": "drop_oldest"}
    stack.interval_s = 0.5
    stack.start_emulator()
    stack.start_broker()
    assert stack.broker is not None
    stack.broker.stop()  # the uplink is away while the buffer fills up
    stack.provision()
    _prefill(stack, cycles=400)
    gaps = AgentGaps(stack)
    stack.start_agent()
    stack.wait_for("the cap to drop the oldest cycles", gaps.look, timeout=60)
    stack.broker.restart()
    stack.start_receiver()

    def drained() -> bool:
        gaps.look()
        ranges = _receiver_ranges(stack)
        return bool(ranges) and all(r["status"] == "declared" for r in ranges) \
            and _stored_max(stack) >= gaps.last_committed() - 4  # the live tail may be in flight

    # The agent's reconnect back-off may have reached its 60 s cap while the broker was away,
    # so the first reconnect alone can take a minute on a loaded machine.
    stack.wait_for("the backlog to drain", drained, timeout=150)
    ranges = _receiver_ranges(stack)
    declared = [(int(str(r["first"])), int(str(r["last"]))) for r in ranges]
    assert declared == gaps.look(), (declared, gaps.seen)
    assert {r["reason"] for r in ranges} == {"disk_cap"}


def _stored_max(stack: Stack) -> int:
    with sqlite3.connect(f"file:{stack.receiver_db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COALESCE(MAX(last), 0) FROM envelopes").fetchone()[0])


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged
