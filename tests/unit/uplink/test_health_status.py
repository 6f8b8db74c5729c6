"""The health documents and when they go out, with a fake link and a fake clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agent.buffer import BufferStats
from agent.health import (
    HealthPublisher,
    HealthSnapshot,
    bus_errors,
    offline_payload,
    online_payload,
    snapshot,
    status_document,
)
from agent.modbus._stats import MeterStats
from nengtan import __version__

STATS = BufferStats(epoch=3, cycles=40, unsent_cycles=12, unsent_readings=480,
                    oldest_unsent_ms=1_748_736_000_000, last_seq=1234)


def test_bus_errors_add_up_silent_garbled_and_exception_replies_per_line() -> None:
    buses = {"/dev/ttyUSB0": {"a": MeterStats(requests=50, ok=40, silent=5, garbled=3, exceptions=2,
                                              skipped=9),
                              "b": MeterStats(silent=1)},
             "tcp://10.0.0.5:502": {"c": MeterStats(ok=7)}}
    assert bus_errors(buses) == {"/dev/ttyUSB0": 11, "tcp://10.0.0.5:502": 0}


def test_the_status_document_has_every_member_the_readme_promises() -> None:
    snap = snapshot(STATS, {"/dev/ttyUSB1": {"m": MeterStats(garbled=2)},
                            "/dev/ttyUSB0": {"m": MeterStats()}},
                    clock_synced=True, now_ms=1_748_736_062_540)
    assert status_document(snap, gateway="gw01", uptime_s=3600.7, sessions=3, attempts=5) == {
        "v": 1, "gw": "gw01", "at": 1_748_736_062_540, "agent_version": __version__,
        "uptime_s": 3600, "epoch": 3, "last_seq": 1234, "clock_synced": True,
        "buffer": {"unsent_cycles": 12, "unsent_readings": 480, "oldest_unsent_age_s": 62.5},
        "bus_errors": {"/dev/ttyUSB0": 0, "/dev/ttyUSB1": 2},
        "uplink": {"sessions": 3, "attempts": 5},
    }


def test_an_empty_buffer_has_no_oldest_age_and_a_clock_stepped_back_gives_no_negative_one() -> None:
    empty = BufferStats(1, 5, 0, 0, None, 5)
    doc = status_document(HealthSnapshot(empty, {}, False, 1_000), gateway="g", uptime_s=1,
                          sessions=0, attempts=0)
    assert doc["buffer"]["oldest_unsent_age_s"] is None and doc["clock_synced"] is False
    behind = HealthSnapshot(STATS, {}, False, STATS.oldest_unsent_ms - 5_000)  # type: ignore[operator]
    doc = status_document(behind, gateway="g", uptime_s=1, sessions=0, attempts=0)
    assert doc["buffer"]["oldest_unsent_age_s"] == 0


def test_state_payloads() -> None:
    assert json.loads(online_payload("gw01", since_ms=42)) == {
        "v": 1, "gw": "gw01", "state": "online", "since": 42, "agent_version": __version__}
    assert offline_payload("gw01", reason="lost") == (
        b'{"v":1,"gw":"gw01","state":"offline","reason":"lost"}')
    assert json.loads(offline_payload("gw01", reason="stopped", since_ms=7))["since"] == 7


@dataclass
class FakeLink:
    gateway: str = "gw01"
    sessions: int = 0
    connect_attempts: int = 0
    status_ready: bool = False
    accept: bool = True
    sent: list[dict[str, object]] = field(default_factory=list)

    def publish_status(self, payload: bytes) -> bool:
        if self.accept:
            self.sent.append(json.loads(payload))
        return self.accept


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_status_goes_out_on_connect_then_every_period_and_again_after_a_reconnect() -> None:
    link, clock, made = FakeLink(), Clock(), []

    def make() -> HealthSnapshot:
        made.append(1)
        return HealthSnapshot(STATS, {}, True, 0)

    health = HealthPublisher(link, every_s=60, monotonic=clock)
    assert not health.tick(make) and made == []  # not connected: nothing made, nothing queued
    link.sessions, link.connect_attempts, link.status_ready = 1, 2, True
    assert health.tick(make) and len(link.sent) == 1
    assert link.sent[0]["uplink"] == {"sessions": 1, "attempts": 2}
    clock.now += 59
    assert not health.tick(make) and len(made) == 1  # not due: no snapshot taken
    clock.now += 1
    assert health.tick(make) and len(link.sent) == 2 and link.sent[1]["uptime_s"] == 60
    clock.now += 5
    link.sessions = 2  # reconnected: the retained status is stale, replace it now
    assert health.tick(make) and len(link.sent) == 3


def test_a_status_the_link_cannot_take_is_dropped_not_retried_from_a_queue() -> None:
    link, clock = FakeLink(sessions=1, status_ready=True, accept=False), Clock()
    health = HealthPublisher(link, every_s=60, monotonic=clock)
    assert not health.tick(lambda: HealthSnapshot(STATS, {}, True, 0))
    assert health.published == 0 and health.due()  # the next tick makes a fresh one
    link.accept = True
    assert health.tick(lambda: HealthSnapshot(STATS, {}, True, 1))
    assert [s["at"] for s in link.sent] == [1]
