"""Kill the agent with SIGKILL at random moments: nothing committed is lost, nothing is counted
twice, and the store is intact after every restart."""

from __future__ import annotations

import random
import sqlite3
import time

from hw_tests.conftest import agent_cycle_sizes, energies_match, receiver_cycle_sizes
from nengtan.stack import Stack

KILLS = 20


def _integrity(stack: Stack) -> str:
    path = stack.workdir / "gateway" / "state" / "buffer.db"
    with sqlite3.connect(path, timeout=10) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_sigkill_at_twenty_random_moments_loses_and_duplicates_nothing(stack: Stack) -> None:
    rng = random.Random(20261122)
    stack.interval_s = 0.5  # busy: polling, committing, publishing and acks overlap all the time
    stack.start_all()
    stack.wait_for("first cycles", lambda: stack.agent_cycles() >= 3, timeout=60)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.2, 2.0))
        stack.stop("agent", kill=True)
        assert _integrity(stack) == "ok"
        stack.start_agent()
    stack.wait_for("cycles after the last restart", lambda: stack.agent_cycles() >= 40, timeout=60)
    stack.mute_emulator()
    stack.wait_for("receiver totals to match the ground truth", lambda: energies_match(stack),
                   timeout=90)
    committed = agent_cycle_sizes(stack)  # the agent goes on committing; these must arrive
    stack.wait_for("every committed cycle at the receiver",
                   lambda: set(committed) <= set(receiver_cycle_sizes(stack)), timeout=60)
    received = receiver_cycle_sizes(stack)
    # Exactly once: each committed cycle arrived with all its readings, and no more.
    assert {seq: received[seq] for seq in committed} == committed
    assert set(received) <= set(agent_cycle_sizes(stack))  # nothing the agent never committed
