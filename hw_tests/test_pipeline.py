"""The whole chain as it runs in a plant: emulator on a pty, agent, Mosquitto, receiver."""

from __future__ import annotations

import time

from hw_tests.conftest import energies_match, receiver_energy, truth_energy
from nengtan.stack import Stack

CYCLES = 8


def test_receiver_energy_per_meter_equals_the_emulators_ground_truth(stack: Stack) -> None:
    stack.start_all()
    stack.wait_for(f"{CYCLES} agent cycles", lambda: stack.agent_cycles() >= CYCLES, timeout=60)
    stack.mute_emulator()  # freezes the ground truth; later cycles carry only 'bad' readings
    stack.wait_for("receiver totals to match the ground truth", lambda: energies_match(stack),
                   timeout=30)
    truth = truth_energy(stack)
    assert len(truth) == len(stack.meters) and all(kwh > 0 for kwh in truth.values())


def test_a_broker_outage_loses_nothing(stack: Stack) -> None:
    stack.start_all()
    stack.wait_for("first delivered energy", lambda: len(receiver_energy(stack)) == 4, timeout=60)
    assert stack.broker is not None
    stack.broker.stop()
    cycles_before = stack.agent_cycles()
    time.sleep(6)  # the agent keeps polling and buffering while the broker is gone
    assert stack.agent_cycles() >= cycles_before + 4
    assert stack.alive("agent") and stack.alive("receiver")
    stack.broker.restart()
    stack.wait_for("more cycles after the outage", lambda: stack.agent_cycles() >= cycles_before + 10,
                   timeout=60)
    stack.mute_emulator()
    stack.wait_for("receiver totals to match the ground truth after the outage",
                   lambda: energies_match(stack), timeout=60)
    # The backlog left in envelopes of several cycles each, sealed once the broker was back.
    assert max(last - first + 1 for first, last, _ in stack.agent_envelopes()) >= 4
