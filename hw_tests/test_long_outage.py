"""The broker away for 72 hours of data, then back: nothing lost, live data interleaved.

Time is compressed: the 72 hours of cycles the gateway collected while its broker was away are
committed straight into its buffer (hw_tests/backlog.py: four three-phase meters, 25 readings
each, every 10 s, taken over the 72 hours before now, one transaction per cycle as the agent
commits them) before the real agent daemon starts. The agent then starts with the broker still
down and polls four emulated meters every second; a few seconds later the broker and the
receiver come back, and the backlog drains while live cycles keep coming.

The agent reaches the broker through a relay that carries 3 Mbit/s upstream, as a gateway's
cellular uplink would. Over bare loopback the agent's own sealing would be the slowest stage:
envelopes are sealed in seq order (the hash chain), so live cycles are sealed only after the
whole backlog, and by then every backlog envelope has already been published (measured: no
live envelope arrived before the last backlog one). Live-first can only reorder envelopes that
are sealed and waiting for the link, which is what a slow uplink produces.

The backlog's meters have ids of their own (``bk-*``), so the live meters can be compared with
the emulator's ground truth and the backlog meters with the energy the generator wrote.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import tomllib
from bisect import bisect_right
from contextlib import closing
from pathlib import Path

import pytest
import tomli_w

from agent.runner import BUFFER_FILE
from hw_tests.backlog import (
    CYCLE_S,
    SyntheticMeters,
    ThrottledRelay,
    agent_cycle_sizes,
    prefill,
    receiver_cycle_count,
    receiver_cycle_sizes,
    receiver_envelopes,
)
from hw_tests.conftest import receiver_energy, truth_energy
from nengtan.stack import GATEWAY_ID, Stack

pytestmark = pytest.mark.hw

HOURS = 72
BACKLOG_CYCLES = int(HOURS * 3600 / CYCLE_S)  # 25,920 cycles, 2,592,000 readings
BACKLOG_METERS = ["bk-main-incomer", "bk-press-line", "bk-compressor", "bk-hvac"]
BACKLOG_ENDS_S = 90  # the last backlog cycle was taken this long before the agent starts
OUTAGE_LIVE_CYCLES = 3  # live cycles committed while the broker is still down
LIVE_LATENCY_S = 60.0  # a live cycle reaches the receiver at most this long after it was taken
UPLINK_BYTES_S = 375_000  # 3 Mbit/s: about 70,000 readings/s at 5.2 bytes each


def _wait_subscribed(stack: Stack, since: int) -> None:
    log = stack.workdir / "receiver.log"
    stack.wait_for("the receiver's subscription", lambda: log.exists() and "subscribed to" in
                   log.read_bytes()[since:].decode(errors="replace"), timeout=30, every=0.05)


def _first_ts(receiver_db: Path, first_seq: int) -> dict[int, int]:
    """The earliest reading timestamp of every stored cycle from ``first_seq`` on."""
    with closing(sqlite3.connect(f"file:{receiver_db}?mode=ro", uri=True, timeout=10)) as conn:
        return {int(s): int(t) for s, t in conn.execute(
            "SELECT seq, MIN(ts_ms) FROM readings WHERE gateway = ? AND seq >= ? GROUP BY seq",
            (GATEWAY_ID, first_seq))}


def test_72_hours_of_backlog_drain_exactly_once_with_live_data_interleaved(stack: Stack) -> None:
    t0 = time.monotonic()
    stack.workdir.mkdir(parents=True, exist_ok=True)
    stack.start_emulator()
    stack.start_broker()
    stack.provision()
    assert stack.broker is not None
    relay = ThrottledRelay((stack.broker.host, stack.broker.port), UPLINK_BYTES_S)
    config = tomllib.loads(stack.agent_config.read_text())
    config["outputs"]["mqtt"]["port"] = relay.port  # the agent's uplink goes through the relay
    stack.agent_config.write_text(tomli_w.dumps(config))
    try:
        _outage_and_drain(stack, relay, t0)
    finally:
        relay.close()


def _outage_and_drain(stack: Stack, relay: ThrottledRelay, t0: float) -> None:
    assert stack.broker is not None
    # The receiver ran before the outage: its persistent session (and subscription) lives on the
    # broker, which queues for it what the agent publishes before the receiver is back.
    stack.start_receiver()
    _wait_subscribed(stack, 0)
    stack.stop("receiver")
    stack.broker.stop()

    # 72 hours collected while the broker was away.
    backlog = SyntheticMeters(BACKLOG_METERS, seed=72)
    end_ms = int(time.time() * 1000) - BACKLOG_ENDS_S * 1000
    filled = prefill(stack.agent_config, backlog, cycles=BACKLOG_CYCLES, end_ms=end_ms)
    assert (filled.first_seq, filled.last_seq) == (1, BACKLOG_CYCLES)
    assert end_ms - filled.first_taken_ms == (BACKLOG_CYCLES - 1) * CYCLE_S * 1000  # ~72 h
    t_prefill = time.monotonic() - t0

    # The agent starts with the broker still down and polls the live meters.
    stack.start_agent()
    stack.wait_for(f"{OUTAGE_LIVE_CYCLES} live cycles during the outage",
                   lambda: stack.agent_cycles() >= BACKLOG_CYCLES + OUTAGE_LIVE_CYCLES, timeout=60)
    back_ms = int(time.time() * 1000)
    log_size = (stack.workdir / "receiver.log").stat().st_size
    stack.broker.restart()
    stack.start_receiver()
    _wait_subscribed(stack, log_size)

    # The drain: wait until every backlog cycle is stored.
    def backlog_in() -> bool:
        got = receiver_envelopes(stack.receiver_db, GATEWAY_ID)
        return sum(min(e.last, BACKLOG_CYCLES) - e.seq + 1 for e in got
                   if e.seq <= BACKLOG_CYCLES) >= BACKLOG_CYCLES

    stack.wait_for("the whole backlog at the receiver", backlog_in, timeout=150, every=0.5)
    drained_at = time.monotonic()
    time.sleep(3)  # a few live cycles after the drain
    muted_at = stack.agent_cycles()
    stack.mute_emulator()  # freezes the ground truth; later cycles carry only 'bad' readings
    # The cycle in progress at the mute may hold the last good reads of the meters polled
    # first; one more cycle after it was started after the mute.
    stack.wait_for("two cycles after the mute", lambda: stack.agent_cycles() >= muted_at + 2,
                   timeout=30)
    buffer_db = stack.workdir / "gateway" / "state" / BUFFER_FILE
    committed = agent_cycle_sizes(buffer_db)
    stack.wait_for("every committed cycle at the receiver", lambda: receiver_cycle_count(
        stack.receiver_db, GATEWAY_ID) >= max(committed), timeout=60)

    # (a) Every backlog and every live cycle reached the receiver exactly once, whole.
    received = receiver_cycle_sizes(stack.receiver_db, GATEWAY_ID)
    assert {seq: received.get(seq) for seq in committed} == committed
    assert set(received) <= set(agent_cycle_sizes(buffer_db))  # nothing the agent never had
    envelopes = receiver_envelopes(stack.receiver_db, GATEWAY_ID)
    spans = sorted((e.seq, e.last) for e in envelopes)
    assert spans[0][0] == 1 and all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:]))
    live_seqs = [s for s in committed if s > BACKLOG_CYCLES]
    assert len(committed) - len(live_seqs) == BACKLOG_CYCLES
    assert sum(committed[s] for s in committed if s <= BACKLOG_CYCLES) == filled.readings

    # (b) During the drain, live cycles arrived within a minute, some of them before the last
    # backlog envelope.
    backlog_envs = [e for e in envelopes if e.seq <= BACKLOG_CYCLES]
    live_envs = [e for e in envelopes if e.seq > BACKLOG_CYCLES]
    last_backlog_ms = max(e.received_ms for e in backlog_envs)
    first_rx_ms = min(e.received_ms for e in envelopes)
    starts = [e.seq for e in sorted(envelopes, key=lambda e: e.seq)]
    by_start = {e.seq: e for e in envelopes}
    taken = _first_ts(stack.receiver_db, BACKLOG_CYCLES + 1)

    def arrival(seq: int) -> int:
        return by_start[starts[bisect_right(starts, seq) - 1]].received_ms

    during = [s for s in live_seqs if back_ms <= taken[s] <= last_backlog_ms]
    latencies = {s: (arrival(s) - taken[s]) / 1000 for s in during}
    all_latencies = [(arrival(s) - taken[s]) / 1000 for s in live_seqs]
    early = [e for e in live_envs if e.received_ms < last_backlog_ms]
    summary = (f"prefill {filled.readings:,} readings / {filled.cycles:,} cycles in "
               f"{filled.seconds:.1f} s; broker back -> first envelope "
               f"{(first_rx_ms - back_ms) / 1000:.1f} s -> last backlog envelope "
               f"{(last_backlog_ms - back_ms) / 1000:.1f} s "
               f"({filled.readings / max(1e-3, (last_backlog_ms - first_rx_ms) / 1000):,.0f} "
               f"readings/s); {len(backlog_envs)} backlog and {len(live_envs)} live envelopes, "
               f"{len(early)} live ones before the last backlog one; {len(during)} live cycles "
               f"taken during the drain, latency max "
               f"{max(latencies.values(), default=math.nan):.1f} s (all live cycles: max "
               f"{max(all_latencies):.1f} s); drain wait {drained_at - t0 - t_prefill:.1f} s, "
               f"test so far {time.monotonic() - t0:.1f} s; uplink carried {relay.up_bytes:,} B "
               f"({relay.up_bytes / filled.readings:.2f} B per backlog reading)")
    print(summary)
    assert during, summary
    assert max(latencies.values()) <= LIVE_LATENCY_S, (summary, latencies)
    assert early, summary

    # (c) Energy: the live meters match the emulator's ground truth, the backlog meters the
    # energy the generator wrote, to the last bit of float noise.
    stored = receiver_energy(stack)
    truth = truth_energy(stack)
    assert set(truth) == {m for m, _, _ in stack.meters} and all(v > 0 for v in truth.values())
    expected = {**truth, **backlog.energy()}
    assert set(stored) == set(expected)
    wrong = {m: (stored[m], kwh) for m, kwh in expected.items()
             if not math.isclose(stored[m], kwh, rel_tol=0, abs_tol=1e-6)}
    assert not wrong, (wrong, _energy_evidence(stack, list(wrong)))


def _energy_evidence(stack: Stack, meters: list[str]) -> dict[str, object]:
    """What the emulator served and what the agent and the receiver hold, per meter."""
    truth = {m: t for m, t in stack.truth().items() if m in meters}
    stats_file = stack.workdir / "gateway" / "state" / "bus-stats.json"
    stats = stats_file.read_text() if stats_file.exists() else ""
    out: dict[str, object] = {"truth": truth, "bus_stats": stats[-3000:]}
    buffer_db = stack.workdir / "gateway" / "state" / BUFFER_FILE
    with closing(sqlite3.connect(f"file:{buffer_db}?mode=ro", uri=True, timeout=10)) as conn:
        rows = conn.execute("SELECT seq, readings FROM cycles WHERE seq > ? ORDER BY seq",
                            (BACKLOG_CYCLES,)).fetchall()
    for meter in meters:
        energy = [(seq, r[2], r[3], r[4]) for seq, blob in rows for r in json.loads(blob)
                  if r[0] == meter and r[1] == "active_energy_import"]
        good = [e for e in energy if e[3] == "good"]
        out[meter] = {"reads": len(energy), "good": len(good), "first_good": good[:1],
                      "last_good": good[-1:], "not_good": [e for e in energy if e[3] != "good"][:20]}
    return out
