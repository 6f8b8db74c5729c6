"""One dead meter must not disturb the rhythm of the others on the same bus."""

from __future__ import annotations

import statistics

from nengtan.stack import Stack

MIX = ["chint-dtsu666", "eastron-sdm630", "chint-ddsu666", "acrel-adl400", "eastron-sdm120",
       "abb-b23", "janitza-umg96rm", "schneider-iem3x55", "chint-dtsu666", "eastron-sdm630"]
INTERVAL_S = 4.0


def test_with_one_of_ten_meters_dead_the_other_nine_keep_their_period(stack: Stack) -> None:
    stack.meters = [(f"m{unit:02}", model, unit) for unit, model in enumerate(MIX, start=1)]
    stack.absent_units = frozenset({5})  # configured on the gateway, silent on the wire
    stack.interval_s = INTERVAL_S
    stack.timeout_ms = 250
    stack.start_emulator()
    stack.start_broker()
    stack.provision()
    stack.start_agent()
    stack.wait_for("9 agent cycles", lambda: stack.agent_cycles() >= 9, timeout=90)

    reads: dict[str, list[int]] = {}
    qualities: dict[str, set[str]] = {}
    for _, meter, measurement, ts_ms, _value, quality in stack.agent_readings():
        qualities.setdefault(meter, set()).add(quality)
        if measurement == "active_energy_import":
            reads.setdefault(meter, []).append(ts_ms)
    assert qualities["m05"] == {"bad"}
    for meter, stamps in reads.items():
        if meter == "m05":
            continue
        assert qualities[meter] == {"good"}, meter
        periods = [(b - a) / 1000 for a, b in zip(stamps[1:], stamps[2:])]  # skip the start-up slot
        assert len(periods) >= 6, meter
        # Every single period, not just the mean, within ±10 % of the configured one.
        assert all(abs(p - INTERVAL_S) <= 0.1 * INTERVAL_S for p in periods), (meter, periods)
        assert abs(statistics.mean(periods) - INTERVAL_S) < 0.02 * INTERVAL_S, (meter, periods)
    # The dead meter backs off: far fewer attempts than cycles.
    attempts = len(reads.get("m05", []))
    assert attempts < stack.agent_cycles() / 2
