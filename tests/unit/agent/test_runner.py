"""The agent loop around the buffer: refused cycles are counted and alarmed, sealing goes on while
connected, the history job runs from the loop; checkpoints go out on time and after reconnects;
in one_way mode nothing waits for an ack and every envelope is sent `redundancy` times."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.buffer import MemoryBuffer, Sealed, SqliteBuffer
from agent.modbus._worker import CycleDone
from agent.outputs.mqtt.delivery import Checkpoints, Resender
from agent.outputs.mqtt.uplink import Verdicts
from agent.runner import Agent
from nengtan.checkpoint import open_checkpoint, seal_checkpoint
from nengtan.envelope import ClockInfo, Reading, seal
from nengtan.jws import Ed25519Signer

SIGNER = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
KEYS = {SIGNER.kid: SIGNER.verification_key()}
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


# -- checkpoints and one_way mode ---------------------------------------------------------------

@dataclass
class Link:
    """An uplink whose publishes are all reported at the next pump: written (one_way) or acked
    (acknowledged), or, after ``die()``, never sent."""

    connected: bool = True
    sessions: int = 1
    window_size: int = 10
    firsts: list[int] = field(default_factory=list)  # every first send, in order
    copies: list[int] = field(default_factory=list)  # every resent copy, in order
    checkpoints: list[str] = field(default_factory=list)
    _out: list[tuple[int, bool]] = field(default_factory=list)
    _cp_out: bool = False
    _dies: bool = False

    @property
    def window(self) -> int:
        return self.window_size - len(self._out) if self.connected else 0

    def pump(self) -> Verdicts:
        verdicts = Verdicts()
        for seq, copy in self._out:
            if self._dies:
                (verdicts.uncopied if copy else verdicts.rejected).append(seq)
            else:
                (verdicts.copied if copy else verdicts.accepted).append(seq)
        self._out, self._cp_out, self._dies = [], False, False
        return verdicts

    def die(self) -> None:
        self._dies = True

    def publish(self, sealed: Sealed, *, copy: bool = False) -> bool:
        (self.copies if copy else self.firsts).append(sealed.seq)
        self._out.append((sealed.seq, copy))
        return True

    @property
    def checkpoint_ready(self) -> bool:
        return self.connected and not self._cp_out

    def publish_checkpoint(self, token: str) -> bool:
        self.checkpoints.append(token)
        self._cp_out = True
        return True

    @property
    def idle(self) -> bool:
        return not (self._out or self._cp_out)

    def close(self) -> Verdicts:
        return self.pump()


class Mono:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _now_clock() -> ClockInfo:
    return ClockInfo("boot-a", 1_000, int(time.time() * 1000))


def _delivery_agent(link: Link, *, one_way: bool, redundancy: int = 2, every_s: float = 60,
                    buffer: MemoryBuffer | None = None) -> tuple[Agent, MemoryBuffer, Mono]:
    mono = Mono()
    buffer = buffer or MemoryBuffer(gateway="gw", sealer=lambda env: seal(SIGNER, env),
                                    clock=_now_clock)
    checkpoints = Checkpoints(gateway="gw", sign=lambda cp: seal_checkpoint(SIGNER, cp),
                              every_s=every_s, clock=_now_clock, monotonic=mono)
    resender = (Resender(redundancy=redundancy, delay_s=30, monotonic=mono) if one_way else None)
    agent = Agent(buses=[], buffer=buffer, uplink=link, max_readings=20,  # type: ignore[arg-type]
                  wake=threading.Event(), synced=lambda: True, checkpoints=checkpoints,
                  resender=resender)
    return agent, buffer, mono


def _stated(token: str) -> tuple[int, int, str | None, int]:
    cp, _ = open_checkpoint(token, KEYS)
    return cp.epoch, cp.last, cp.head, cp.sealed


def test_one_way_counts_an_envelope_sent_once_written_and_sends_each_redundancy_times() -> None:
    link = Link()
    agent, buffer, mono = _delivery_agent(link, one_way=True, redundancy=3)
    for i in range(3):
        agent.commit(_cycle(i))  # 20 readings each: one envelope per cycle
    agent.forward()
    assert link.firsts == [1, 2, 3]
    agent.forward()  # written: sent, with no acknowledgement asked for
    assert buffer.stats().unsent_envelopes == 0 and link.copies == []
    mono.now += 29
    agent.forward()
    assert link.copies == []
    mono.now += 1
    agent.forward()
    assert link.copies == [1, 2, 3]
    agent.forward()  # written
    mono.now += 30
    agent.forward()
    assert link.copies == [1, 2, 3, 1, 2, 3]
    agent.forward()
    mono.now += 3600
    agent.forward()
    assert link.copies == [1, 2, 3, 1, 2, 3] and link.firsts == [1, 2, 3]


def test_one_way_what_never_left_is_sent_again() -> None:
    link = Link()
    agent, _, mono = _delivery_agent(link, one_way=True)
    agent.commit(_cycle(0))
    agent.forward()
    link.die()
    agent.forward()  # the link died before envelope 1 was written: back to the buffer ...
    assert link.firsts == [1, 1]  # ... and out again on the next connection
    agent.forward()
    mono.now += 30
    agent.forward()
    assert link.copies == [1]
    link.die()
    agent.forward()  # that copy never left either: due again at once
    assert link.copies == [1, 1]


def test_one_way_skips_the_copies_of_envelopes_whose_history_is_gone() -> None:
    link = Link()
    agent, buffer, mono = _delivery_agent(link, one_way=True)
    agent.commit(_cycle(0))
    agent.forward()
    agent.forward()
    buffer.prune_history(sent_before_ms=int(time.time() * 1000) + 1)
    mono.now += 30
    agent.forward()
    assert link.copies == [] and agent.resender is not None and agent.resender.given_up == 1


def test_a_checkpoint_goes_out_at_once_then_periodically_and_after_a_reconnect() -> None:
    link = Link()
    agent, buffer, mono = _delivery_agent(link, one_way=False, every_s=300)
    agent.commit(_cycle(0))
    agent.forward()  # seals envelope 1, then states it
    [first] = link.checkpoints
    head = buffer.chain_head()
    assert _stated(first) == (1, 1, head.head, 1)
    agent.forward()
    mono.now += 299
    agent.forward()
    assert len(link.checkpoints) == 1
    link.sessions = 2  # reconnected
    agent.forward()
    assert link.checkpoints[1] == first  # the chain has not moved: the same token again
    agent.commit(_cycle(1))
    mono.now += 300
    agent.forward()
    assert _stated(link.checkpoints[2])[1:] == (2, buffer.chain_head().head, 2)


def test_a_clean_stop_in_one_way_sends_everything_owed_then_the_last_checkpoints() -> None:
    link = Link()
    agent, buffer, _ = _delivery_agent(link, one_way=True, redundancy=2)
    agent.commit(_cycle(0))
    agent.forward()
    agent.forward()
    agent.commit(_cycle(1))  # committed, not even sealed yet
    assert buffer.stats().unsealed_cycles == 1
    before = len(link.checkpoints)
    agent.close()
    assert link.firsts == [1, 2] and buffer.stats().unsent_envelopes == 0
    assert sorted(link.copies) == [1, 2]  # no waiting 30 s: now rather than never
    finals = link.checkpoints[before:]
    assert len(finals) == 2 and {_stated(t)[1] for t in finals} == {2}


def test_a_clean_stop_in_acknowledged_mode_sends_one_last_checkpoint_and_no_envelope() -> None:
    link = Link()
    agent, _, _ = _delivery_agent(link, one_way=False)
    agent.commit(_cycle(0))
    agent.forward()
    agent.commit(_cycle(1))
    before = len(link.checkpoints)
    agent.close()
    assert link.firsts == [1]  # the unsealed cycle waits in the buffer for the next start
    assert len(link.checkpoints) == before + 1 and _stated(link.checkpoints[-1])[1] == 1


def test_after_a_restart_one_way_sends_the_recently_sent_envelopes_again() -> None:
    buffer = MemoryBuffer(gateway="gw", sealer=lambda env: seal(SIGNER, env), clock=_now_clock)
    for i in range(2):
        buffer.add(_cycle(i).readings, taken_ms=i, time_synced=True)
    buffer.end([s.seq for s in buffer.begin(max_envelopes=5, max_readings=20)], [])
    link = Link()
    agent, _, mono = _delivery_agent(link, one_way=True, buffer=buffer)
    agent.run(threading.Event(), duration=0.0)  # start-up, no step
    mono.now += 30
    agent.forward()
    assert link.copies == [1, 2] and link.firsts == []
