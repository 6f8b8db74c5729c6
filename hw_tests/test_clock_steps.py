"""A Pi has no real-time clock: its wall clock can be stepped by hours, or start in 1970. The real
agent runs with a shifted wall clock here (hw_tests/fakeclock); sequence order, delivery and
energy must not care."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from hw_tests.conftest import agent_cycle_sizes, energies_match, receiver_cycle_sizes
from nengtan.stack import Stack

STEP_CYCLES = 5
FAKECLOCK = Path(__file__).parent / "fakeclock"


def _set_clock(spec_file: Path, spec: str) -> None:
    tmp = spec_file.with_suffix(".tmp")
    tmp.write_text(spec + "\n")
    os.replace(tmp, spec_file)


def _reading_times(stack: Stack, after_seq: int) -> list[int]:
    return [ts for seq, _m, measurement, ts, _v, _q in stack.agent_readings()
            if seq > after_seq and measurement == "active_energy_import"]


def test_clock_stepped_back_and_forward_and_a_1970_boot_lose_and_merge_nothing(stack: Stack) -> None:
    spec_file = stack.workdir / "faketime.spec"
    _set_clock(spec_file, "0")
    env = {"PYTHONPATH": os.pathsep.join([str(FAKECLOCK), os.environ.get("PYTHONPATH", "")]),
           "NENGTAN_FAKE_CLOCK_FILE": str(spec_file)}
    stack.interval_s = 0.5
    stack.start_emulator()
    stack.start_broker()
    stack.provision()
    stack.start_receiver()
    stack.start_agent(env=env)
    stamps: dict[str, list[int]] = {}
    for spec in ("0", "-10800", "10800"):  # now, stepped back 3 h, then 3 h ahead of real time
        _set_clock(spec_file, spec)
        before = stack.agent_cycles() + 1  # the cycle under way may straddle the step
        stack.wait_for(f"cycles with the clock at {spec}",
                       lambda b=before: stack.agent_cycles() >= b + STEP_CYCLES, timeout=60)
        stamps[spec] = _reading_times(stack, before)
    hour_ms = 3_600_000
    assert max(stamps["-10800"]) < min(stamps["0"]) - 2 * hour_ms  # really stepped back
    assert min(stamps["10800"]) > max(stamps["0"]) + 2 * hour_ms  # and then far ahead
    ahead = stamps["10800"]
    # A boot with no RTC and no network: the clock starts at 1970.
    stack.stop("agent")
    _set_clock(spec_file, "@0")
    before = stack.agent_cycles()
    stack.start_agent(env=env)
    stack.wait_for("cycles after a 1970 boot", lambda: stack.agent_cycles() >= before + STEP_CYCLES,
                   timeout=60)
    in_1970 = _reading_times(stack, before)
    assert in_1970 and max(in_1970) < 86_400_000 * 2  # the agent really lived in 1970
    assert min(ahead) > max(in_1970)
    stack.mute_emulator()
    stack.wait_for("receiver totals to match the ground truth", lambda: energies_match(stack),
                   timeout=90)
    committed = agent_cycle_sizes(stack)
    stack.wait_for("every committed cycle at the receiver",
                   lambda: set(committed) <= set(receiver_cycle_sizes(stack)), timeout=60)
    received = receiver_cycle_sizes(stack)
    # Nothing lost, nothing merged: each cycle is stored whole, under its own seq, once.
    assert {seq: received[seq] for seq in committed} == committed
    with sqlite3.connect(f"file:{stack.receiver_db}?mode=ro", uri=True) as conn:
        flags = {row[0] for row in conn.execute("SELECT synced FROM envelopes")}
    # The kernel is the judge of "synced" (adjtimex); libfaketime cannot fool it, so every
    # envelope here carries the state the kernel reported, and none is left unmarked.
    assert flags <= {0, 1} and None not in flags
