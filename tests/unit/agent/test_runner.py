"""The agent loop around the buffer: refused cycles are counted and alarmed, sealing goes on while
connected, the history job runs from the loop."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.buffer import MemoryBuffer, Sealed, SqliteBuffer
from agent.modbus._worker import CycleDone
from agent.outputs.mqtt.uplink import Verdicts
from agent.runner import Agent
from nengtan.envelope import ClockInfo, Reading, seal
from nengtan.jws import Ed25519Signer

SIGNER = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
T0 = 1_763_769_600.0


@dataclass
class FakeUplink:
    connected: bool = True
    window: int = 5
    published: list[Sealed] = field(default_factory=list)
    verdicts: Verdicts = field(default_factory=Verdicts)

    def pump(self) -> Verdicts:
        verdicts, self.verdicts = self.verdicts, Verdicts()
        return verdicts

    def publish(self, sealed: Sealed) -> bool:
        self.published.append(sealed)
        return True

    def close(self) -> Verdicts:
        return self.pump()


def _cycle(i: int, n: int = 20) -> CycleDone:
    readings = tuple(Reading("main", "active_energy_import", int(T0 * 1000) + j, float(j), "good")
                     for j in range(n))
    return CycleDone("bus", readings, T0 + i, ("main",))


def _clock() -> ClockInfo:
    return ClockInfo("boot-a", 1_000, int(T0 * 1000))


def _agent(buffer: object, uplink: FakeUplink | None = None) -> Agent:
    return Agent(buses=[], buffer=buffer, uplink=uplink or FakeUplink(),  # type: ignore[arg-type]
                 max_readings=1000, wake=threading.Event(), synced=lambda: True)


def _memory() -> MemoryBuffer:
    return MemoryBuffer(gateway="gw", sealer=lambda env: seal(SIGNER, env), clock=_clock)


def test_a_refusing_buffer_is_counted_and_alarmed_once_per_episode(tmp_path: Path) -> None:
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=lambda env: seal(SIGNER, env),
                          max_bytes=128 * 1024, full_policy="block", clock=_clock)
    agent = _agent(buffer, FakeUplink(connected=False))
    i = 0
    while agent.stats.refused_cycles < 3:
        agent.commit(_cycle(i))
        i += 1
    assert agent.stats.cycles + agent.stats.refused_cycles == i
    assert agent.stats.refused_readings == 3 * 20
    assert [a.kind for a in buffer.alarms()] == ["buffer_full"]
    # The uplink comes back and drains; history makes room; storing resumes.
    agent.uplink.connected = True  # type: ignore[attr-defined]
    for _ in range(20):
        agent.forward()
        agent.uplink.verdicts = Verdicts([s.seq for s in agent.uplink.published], [])  # type: ignore[attr-defined]
    assert agent.commit(_cycle(i)) is not None
    kinds = [a.kind for a in buffer.alarms()]
    assert kinds == ["buffer_full", "buffer_full_ended"]
    assert "3 cycle(s) with 60 reading(s) were refused" in buffer.alarms()[-1].message
    assert buffer.stats().dropped_readings == 60  # and declared to the receiver as a gap
    buffer.close()


def test_offline_cycles_wait_unsealed_to_leave_in_large_envelopes() -> None:
    buffer = _memory()
    agent = _agent(buffer, FakeUplink(connected=False, window=0))
    for i in range(3):
        agent.commit(_cycle(i))
        agent.forward()
    assert buffer.stats().unsealed_cycles == 3


def test_while_connected_sealing_goes_on_even_with_a_full_window() -> None:
    buffer = _memory()
    uplink = FakeUplink(window=0)
    agent = _agent(buffer, uplink)
    agent.commit(_cycle(0))
    agent.forward()
    assert buffer.stats().unsealed_cycles == 0 and uplink.published == []
    uplink.window = 5
    agent.forward()
    assert [s.seq for s in uplink.published] == [1]


def test_the_history_job_runs_hourly_from_the_loop_and_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = _memory()
    agent = _agent(buffer)
    [job] = agent.scheduler.jobs
    assert (job.interval, job.unit) == (1, "hours")
    calls: list[int] = []
    monkeypatch.setattr(buffer, "prune_history", lambda *, sent_before_ms: calls.append(sent_before_ms) or 0)
    agent.run(threading.Event(), duration=0.0)
    assert len(calls) == 1  # once at start-up
    agent.scheduler.run_all()
    assert len(calls) == 2
    assert abs(calls[0] / 1000 - (time.time() - 7 * 86400)) < 60


def test_expired_history_leaves_the_buffer_and_unsent_cycles_stay() -> None:
    clock_ms = [int(T0 * 1000)]
    buffer = MemoryBuffer(gateway="gw", sealer=lambda env: seal(SIGNER, env),
                          clock=lambda: ClockInfo("b", 1, clock_ms[0]))
    agent = _agent(buffer)
    agent.commit(_cycle(0))
    agent.forward()
    agent.uplink.verdicts = Verdicts([1], [])  # type: ignore[attr-defined]
    agent.forward()
    agent.commit(_cycle(1))
    agent._history_days = 0.0  # everything acknowledged before now has expired
    agent.expire_history()
    stats = buffer.stats()
    assert (stats.cycles, stats.unsent_cycles) == (1, 1)
