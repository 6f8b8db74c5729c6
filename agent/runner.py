"""The agent loop: bus workers read the meters; this loop commits each finished cycle to the
buffer (one transaction, one sequence number) and then feeds the uplink.

Polling never waits for the network: a cycle is committed first, whatever the broker is doing.
Envelopes are sealed only while the uplink is connected, so a backlog built up offline leaves in
large envelopes instead of one per cycle; once connected, sealing goes on (a bounded amount per
step) even while the send window is full, so live cycles are sealed, and sent first, within
about a minute while days of backlog drain behind them.

A buffer at its cap under policy "block" refuses cycles: the loop counts every refused cycle
and reading, raises an alarm when refusing starts and another when it ends, and keeps polling.
Sent history older than ``history_days`` is deleted by an hourly job (the ``schedule`` library,
run from this loop; also once at start-up).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import schedule

from agent.buffer import Buffer, BufferFull, SqliteBuffer
from agent.health import HealthPublisher, snapshot
from agent.config import AgentConfig, BusConfig
from agent.identity import key_path, load_signer
from agent.inputs.modbus_rtu.bus import rtu_poller
from agent.inputs.modbus_tcp.bus import tcp_poller
from agent.modbus._poller import ModbusPoller
from agent.modbus._stats import write_stats
from agent.modbus._worker import BusWorker, CycleDone
from agent.outputs.mqtt.uplink import MqttUplink
from agent.system import clock_synced, sd_notify
from nengtan.envelope import seal
from nengtan.errors import NengtanError, StoreError

log = logging.getLogger(__name__)
BUFFER_FILE = "buffer.db"
STATS_FILE = "bus-stats.json"
STATS_EVERY_S = 5.0
HISTORY_EVERY_H = 1
MIB = 1024 * 1024


class BusCrashed(NengtanError):
    """A bus worker died; the agent exits so that systemd restarts it."""


def make_poller(bus: BusConfig) -> ModbusPoller:
    return rtu_poller(bus) if bus.kind == "rtu" else tcp_poller(bus)


@dataclass
class LoopStats:
    cycles: int = 0  # committed
    readings: int = 0
    bad_readings: int = 0
    refused_cycles: int = 0  # the buffer refused them (full, policy block): counted, never silent
    refused_readings: int = 0


class Agent:
    def __init__(self, *, buses: Sequence[BusConfig], buffer: Buffer, uplink: MqttUplink,
                 max_readings: int, wake: threading.Event, stats_path: Path | None = None,
                 poller_factory: Callable[[BusConfig], ModbusPoller] = make_poller,
                 synced: Callable[[], bool] = clock_synced, history_days: float = 7.0,
                 scheduler: schedule.Scheduler | None = None,
                 health: HealthPublisher | None = None) -> None:
        self.buffer, self.uplink, self.health = buffer, uplink, health
        self._max_readings, self._wake, self._synced = max_readings, wake, synced
        self._cycles: queue.Queue[CycleDone] = queue.Queue()
        self.workers = [BusWorker(b, poller_factory(b), self._cycles, wake=wake) for b in buses]
        self._stats_path = stats_path
        self._stats_due = 0.0
        self.stats = LoopStats()
        self._ready_sent = False
        self._history_days = history_days
        self._refusing: tuple[int, int] | None = None  # refused (cycles, readings) this episode
        self.scheduler = scheduler or schedule.Scheduler()
        self.scheduler.every(HISTORY_EVERY_H).hours.do(self.expire_history)

    def commit(self, cycle: CycleDone) -> int | None:
        """Commit one finished bus cycle; the watchdog is fed only after that really happened
        (or the buffer refused it by policy, which is counted and alarmed). None if refused."""
        try:
            seq: int | None = self.buffer.add(cycle.readings, taken_ms=int(cycle.started * 1000),
                                              time_synced=self._synced())
        except BufferFull as exc:
            seq = None
            self._refused(len(cycle.readings), exc)
        else:
            self.stats.cycles += 1
            self.stats.readings += len(cycle.readings)
            self.stats.bad_readings += sum(r.quality == "bad" for r in cycle.readings)
            if self._refusing is not None:
                cycles, readings = self._refusing
                self._refusing = None
                self.buffer.alarm("buffer_full_ended", f"cycles are stored again; {cycles} "
                                  f"cycle(s) with {readings} reading(s) were refused meanwhile")
        sd_notify("WATCHDOG=1" if self._ready_sent else "READY=1")
        self._ready_sent = True
        return seq

    def _refused(self, readings: int, exc: BufferFull) -> None:
        self.stats.refused_cycles += 1
        self.stats.refused_readings += readings
        if self._refusing is None:
            self._refusing = (0, 0)
            self.buffer.alarm("buffer_full", f"refusing poll cycles ({exc}); polling goes on and "
                              "every refused cycle is counted and declared as a gap")
        cycles, total = self._refusing
        self._refusing = (cycles + 1, total + readings)

    def forward(self) -> None:
        verdicts = self.uplink.pump()
        if verdicts.accepted or verdicts.rejected:
            self.buffer.end(verdicts.accepted, verdicts.rejected)
        if not self.uplink.connected:
            return  # offline: cycles wait unsealed, to leave in large envelopes later
        # With a full window this still seals (bounded work) and returns nothing.
        window = max(self.uplink.window, 0)
        for sealed in self.buffer.begin(max_envelopes=window, max_readings=self._max_readings):
            if not self.uplink.publish(sealed):
                self.buffer.end([], [sealed.seq])

    def expire_history(self) -> None:
        """The hourly job: delete sent cycles older than history_days, in small batches.

        Acknowledgement times are wall-clock stamps: a clock stuck in 1970 expires nothing, one
        that jumps ahead expires history early. Only sent history is ever at stake here."""
        before = int((time.time() - self._history_days * 86400) * 1000)
        try:
            self.buffer.prune_history(sent_before_ms=before)
        except StoreError as exc:
            log.error("cannot expire the sent history: %s", exc)

    def _write_stats(self) -> None:
        now = time.monotonic()
        if self._stats_path is None or now < self._stats_due:
            return
        self._stats_due = now + STATS_EVERY_S
        try:
            write_stats(self._stats_path, {w.config.name: w.stats() for w in self.workers})
        except OSError as exc:
            log.warning("cannot write %s: %s", self._stats_path, exc)

    def step(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a finished cycle or an acknowledgement, commit every
        finished cycle, then forward."""
        self._wake.wait(timeout)
        self._wake.clear()
        try:
            while True:
                self.commit(self._cycles.get_nowait())
        except queue.Empty:
            pass
        for worker in self.workers:
            if worker.crashed is not None:
                raise BusCrashed(f"{worker.config.name}: {worker.crashed!r}")
        self.forward()
        if self.health is not None:
            self.health.tick(lambda: snapshot(
                self.buffer.stats(), {w.config.name: w.stats() for w in self.workers},
                clock_synced=self._synced()))
        self.scheduler.run_pending()
        self._write_stats()

    def run(self, stop: threading.Event, *, duration: float | None = None) -> None:
        for worker in self.workers:
            worker.start()
        self.expire_history()
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self.step(timeout=0.2)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            if worker.is_alive():
                worker.join(timeout=10)
        # Cycles a worker finished while stopping are committed, not lost.
        try:
            while True:
                self.commit(self._cycles.get_nowait())
        except queue.Empty:
            pass
        verdicts = self.uplink.close()
        if verdicts.accepted or verdicts.rejected:
            self.buffer.end(verdicts.accepted, verdicts.rejected)
        self._stats_due = 0.0
        self._write_stats()
        self.buffer.close()


def build_agent(config: AgentConfig) -> Agent:
    """Wire up an agent from a validated config: the first place that touches files or ports."""
    signer = load_signer(key_path(config.gateway.key_file))
    state = Path(config.gateway.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    buffer = SqliteBuffer(state / BUFFER_FILE, gateway=config.gateway.id,
                          sealer=lambda envelope: seal(signer, envelope),
                          max_bytes=config.gateway.buffer_max_mb * MIB,
                          full_policy=config.gateway.buffer_full_policy)
    wake = threading.Event()
    uplink = MqttUplink(config.mqtt, gateway=config.gateway.id, wake=wake)
    return Agent(buses=config.buses, buffer=buffer, uplink=uplink, wake=wake,
                 max_readings=config.mqtt.max_readings_per_envelope, stats_path=state / STATS_FILE,
                 history_days=config.gateway.history_days,
                 health=HealthPublisher(uplink, every_s=config.mqtt.status_every_s))
