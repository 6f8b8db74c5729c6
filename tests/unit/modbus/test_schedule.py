"""The line schedule: aligned periods, separate counter periods, exponential back-off."""

from __future__ import annotations

from agent.modbus._schedule import BACKOFF_CAP_S, MeterSchedule, Schedule, next_aligned


def test_slots_fall_on_multiples_of_the_period_on_the_wall_clock() -> None:
    assert next_aligned(1000.3, 10) == 1010
    assert next_aligned(1010.0, 10) == 1020  # strictly after: a slot is never run twice
    assert next_aligned(3599.9, 900) == 3600  # energy on :00 / :15 / :30 / :45


def test_counters_and_instant_values_keep_their_own_periods() -> None:
    schedule = Schedule([MeterSchedule("m", 5, 15)], now=1000.0)
    seen = []
    for now in (1005, 1010, 1015, 1020):
        [due] = schedule.due(float(now))
        seen.append((now, due.instants, due.counters))
    # 1005 and 1020 are multiples of 15 on the wall clock, 1010 and 1015 are not.
    assert seen == [(1005, True, True), (1010, True, False), (1015, True, False), (1020, True, True)]


def test_nothing_is_due_between_slots() -> None:
    schedule = Schedule([MeterSchedule("m", 10, 10)], now=1000.0)
    assert schedule.next_wake() == 1010
    assert schedule.due(1009.99) == []


def test_a_silent_meter_backs_off_exponentially_and_the_others_do_not() -> None:
    schedule = Schedule([MeterSchedule("dead", 10, 10), MeterSchedule("ok", 10, 10)], now=0.0)
    attempts = []
    for now in range(10, 400, 10):
        due = schedule.due(float(now))
        if any(d.meter_id == "dead" for d in due):
            attempts.append(now)
            schedule.record("dead", silent=True, now=float(now))
        assert any(d.meter_id == "ok" for d in due)  # the healthy meter keeps every slot
    # Tried at once, then after 1, 2, 4, 8, 16 periods ...
    assert attempts[:6] == [10, 20, 40, 80, 160, 320]


def test_back_off_is_capped_and_ends_at_the_first_answer() -> None:
    schedule = Schedule([MeterSchedule("m", 10, 10)], now=0.0)
    for _ in range(20):
        schedule.record("m", silent=True, now=0.0)
    assert schedule.meters["m"].backoff.until <= BACKOFF_CAP_S
    schedule.record("m", silent=False, now=0.0)
    assert schedule.due(10.0)[0].meter_id == "m"


def test_a_meter_that_stayed_silent_is_read_after_the_healthy_ones() -> None:
    schedule = Schedule([MeterSchedule(m, 10, 10) for m in ("a", "dead", "c")], now=0.0)
    assert [d.meter_id for d in schedule.due(10.0)] == ["a", "dead", "c"]
    schedule.record("dead", silent=True, now=10.0)
    assert [d.meter_id for d in schedule.due(20.0)] == ["a", "c", "dead"]


def test_a_wall_clock_stepped_back_three_hours_does_not_stall_the_bus() -> None:
    schedule = Schedule([MeterSchedule("m", 10, 900)], now=20_000.0)
    assert schedule.due(20_010.0)
    stepped = 20_010.0 - 3 * 3600
    schedule.observe(stepped)
    assert schedule.next_wake() - stepped <= 10  # not three hours from now
    assert schedule.due(stepped + 10)


def test_a_wall_clock_stepped_forward_runs_the_due_slots_once_and_realigns() -> None:
    schedule = Schedule([MeterSchedule("m", 10, 10)], now=0.0)
    assert len(schedule.due(3 * 3600.0 + 5)) == 1  # one read, not a burst of 1080 missed slots
    assert schedule.next_wake() == 3 * 3600.0 + 10
