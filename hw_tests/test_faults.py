"""The real agent daemon on a faulty RS-485 line: one meter misbehaves, the agent must survive,
keep reading the others, store the failing meter's readings as 'bad' (or skip it while it backs
off), and read it normally again once the fault is gone.

The bus is emulated in this process (``hw_tests.faultkit``), so each test flips a fault on the
line while the agent subprocess polls it: 3 meters at 9600 8N1, a 1 s poll period, a 200 ms
timeout, unit 2 (u2) in the middle of the polling order. One agent and bus serve the whole
module; each test starts from a cycle where every meter read well.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from hw_tests.faultkit import AgentRig, Cycle

pytestmark = pytest.mark.hw

# The meter's budget to start answering; the agent adds the answer's wire time, so its one
# 80-register read of the SDM630 (u2) may take 200 + 187.5 ms.
TIMEOUT_MS = 200
FAULTY, FAULTY_UNIT = "u2", 2
BEFORE, AFTER = "u1", "u3"  # polled before and after the faulty meter in every cycle
FAULT_CYCLES = 4  # cycles that run entirely under the fault
SETTLE_S = 30.0  # for every meter to read well before a fault
RECOVER_S = 40.0  # for the faulty meter to read well after it (back-off included)

# Wide enough for any emulated plant, narrow enough that registers decoded from the wrong frame
# or the wrong offset show up.
PLAUSIBLE = [("voltage_l1_l2", 340, 460), ("voltage_l2_l3", 340, 460), ("voltage_l3_l1", 340, 460),
             ("voltage_", 190, 270), ("current_", 0, 200), ("power_factor", -1, 1),
             ("frequency", 45, 55), ("_energy_", 0, 1e7), ("power", -2e5, 2e5)]


def implausible(cycle: Cycle, meters: tuple[str, ...]) -> list[str]:
    found = []
    for meter in meters:
        for measurement, value in cycle.values(meter).items():
            low, high = next((lo, hi) for prefix, lo, hi in PLAUSIBLE if prefix in measurement)
            if not low <= value <= high:
                found.append(f"seq {cycle.seq} {meter} {measurement}={value}")
    return found


@dataclass
class FaultRun:
    fault_cycles: list[Cycle]
    recovered: Cycle
    recovery_s: float


def fresh_rig(workdir_factory: pytest.TempPathFactory) -> AgentRig:
    rig = AgentRig(workdir_factory.mktemp("faults"), timeout_ms=TIMEOUT_MS).start()
    try:
        rig.wait_for_cycle("every meter read well",
                           lambda c: c.all_good(*rig.ids), timeout=SETTLE_S)
    except BaseException:
        rig.close()
        raise
    return rig


@pytest.fixture(scope="module")
def shared_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRig]:
    rig = fresh_rig(tmp_path_factory)
    try:
        yield rig
    finally:
        rig.close()


def run_fault(rig: AgentRig, inject: Callable[[], object], *,
              recovered: Callable[[Cycle], bool]) -> FaultRun:
    """From a cycle where every meter read well: inject, collect ``FAULT_CYCLES`` cycles that
    began after the injection, clear every fault, wait until ``recovered`` holds for a cycle."""
    rig.wait_for_cycle("every meter read well", lambda c: c.all_good(*rig.ids),
                       after_seq=rig.last_seq(), timeout=SETTLE_S)
    inject()
    injected_ms = time.time() * 1000
    # A cycle already under way when the fault came is only partly affected: leave it out.
    started_after: list[Cycle] = []
    deadline = time.monotonic() + FAULT_CYCLES * rig.interval_s * 3 + 10
    seen = rig.last_seq() - 1
    while len(started_after) < FAULT_CYCLES:
        new = rig.cycles(seen)
        seen = new[-1].seq if new else seen
        started_after += [c for c in new if c.taken_ms > injected_ms]
        if time.monotonic() > deadline or not rig.alive():
            rig.bus.clear_faults()
            pytest.fail(f"only {len(started_after)} cycles under the fault\n{rig.evidence()}")
        time.sleep(0.1)
    rig.bus.clear_faults()
    cleared = time.monotonic()
    fault_cycles = started_after[:FAULT_CYCLES]
    good = rig.wait_for_cycle("the faulty meter read well again", recovered,
                              after_seq=started_after[-1].seq, timeout=RECOVER_S)
    return FaultRun(fault_cycles, good, time.monotonic() - cleared)


def assert_faulty_meter_bad_or_skipped(rig: AgentRig, run: FaultRun) -> None:
    why = rig.evidence(run.fault_cycles)
    for cycle in run.fault_cycles:
        assert cycle.qualities(FAULTY) <= {"bad"}, f"{FAULTY} read under the fault\n{why}"
    assert any(c.qualities(FAULTY) == {"bad"} for c in run.fault_cycles), \
        f"no cycle stored {FAULTY} as bad\n{why}"


def assert_plausible(rig: AgentRig, run: FaultRun) -> None:
    wrong = [w for c in [*run.fault_cycles, run.recovered] for w in implausible(c, tuple(rig.ids))]
    assert not wrong, f"good readings with implausible values: {wrong}\n{rig.evidence()}"


UNIT_FAULTS: dict[str, dict[str, object]] = {
    "silent": {"silent": True},
    # First byte ~478 ms after the request, 90 ms past the agent's timeout; lasts 172 ms.
    "late-answer": {"delay_ms": 450},
    "corrupt-crc": {"corrupt_crc": True},
    "noise": {"noise": 8, "noise_at": "both"},  # random bytes glued to both ends of the answer
    "truncated": {"truncate": 40},  # of 165 bytes
    "exception-04": {"exception_code": 4},
    "wrong-unit": {"wrong_unit": 1},  # a valid frame, but from the meter polled before it
}


@pytest.mark.parametrize("kind", list(UNIT_FAULTS))
def test_one_faulty_meter_is_stored_bad_the_others_good_then_it_recovers(
        shared_rig: AgentRig, kind: str) -> None:
    rig = shared_rig
    baseline = rig.cycles_tail(1)[0].measurements(FAULTY)
    run = run_fault(rig, lambda: rig.bus.set_faults(FAULTY_UNIT, **UNIT_FAULTS[kind]),
                    recovered=lambda c: c.all_good(FAULTY)
                    and c.measurements(FAULTY) == baseline)
    assert rig.alive(), rig.evidence()
    assert_faulty_meter_bad_or_skipped(rig, run)
    why = rig.evidence(run.fault_cycles)
    for cycle in run.fault_cycles:
        assert cycle.all_good(BEFORE), f"{BEFORE} hurt by {kind} on {FAULTY}\n{why}"
        # A late answer must not collide with the next meter's: after a timeout the agent lets
        # the line stay quiet for as long again before it sends the next request.
        assert cycle.all_good(AFTER), f"{AFTER} hurt by {kind} on {FAULTY}\n{why}"
    assert_plausible(rig, run)
    print(f"{kind}: {FAULTY} read well again {run.recovery_s:.1f} s after the fault cleared")


def test_a_second_master_on_the_line_hurts_every_meter_and_the_agent_recovers(
        shared_rig: AgentRig) -> None:
    rig = shared_rig
    run = run_fault(rig, lambda: rig.bus.set_bus_faults(second_master=True),
                    recovered=lambda c: c.all_good(*rig.ids))
    assert rig.alive(), rig.evidence()
    assert rig.bus.rogue_frames > 0
    hit = [c for c in run.fault_cycles if any("bad" in c.qualities(m) for m in rig.ids)]
    assert hit, f"the second master hurt nothing\n{rig.evidence(run.fault_cycles)}"
    assert sum(s.collisions for s in rig.bus.stats.values()) > 0
    assert_plausible(rig, run)
    print(f"second master: every meter read well {run.recovery_s:.1f} s after it left")


@pytest.fixture
def own_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentRig]:
    rig = fresh_rig(tmp_path_factory)
    try:
        yield rig
    finally:
        rig.close()


def test_exception_02_from_one_meter_is_stored_bad_then_it_recovers(own_rig: AgentRig) -> None:
    """Its own agent: exception 02 changes how the agent reads the meter from then on (no hole
    bridging, points it thinks are never served dropped), which would leak into other tests."""
    rig = own_rig
    baseline = rig.cycles_tail(1)[0].measurements(FAULTY)
    run = run_fault(rig, lambda: rig.bus.set_faults(FAULTY_UNIT, exception_code=2),
                    recovered=lambda c: c.all_good(FAULTY))
    assert rig.alive(), rig.evidence()
    assert_faulty_meter_bad_or_skipped(rig, run)
    why = rig.evidence(run.fault_cycles)
    for cycle in run.fault_cycles:
        assert cycle.all_good(BEFORE, AFTER), f"exception 02 on {FAULTY} hurt the others\n{why}"
    assert_plausible(rig, run)
    # Everything it served before the fault, it serves again: does the agent read it all again?
    later = rig.wait_for_cycles(3, after_seq=run.recovered.seq, timeout=15)
    lost = baseline - set().union(*(c.measurements(FAULTY) for c in later))
    # A meter-wide refusal teaches the agent nothing about holes or unserved points.
    assert not lost, f"after a {FAULT_CYCLES}-cycle burst of exception 02, {FAULTY} is no " \
                     f"longer read for {sorted(lost)}\n{rig.evidence(later)}"
