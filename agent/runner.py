"""The agent loop: bus workers read the meters; this loop commits each finished cycle to the
buffer (one transaction, one sequence number) and then feeds the uplink.

Polling never waits for the network: a cycle is committed first, whatever the broker is doing.
Envelopes are sealed only when the uplink can take them, so a backlog built up offline leaves in
large envelopes instead of one per cycle.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.buffer import Buffer, SqliteBuffer
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
from nengtan.errors import NengtanError

log = logging.getLogger(__name__)
BUFFER_FILE = "buffer.db"
STATS_FILE = "bus-stats.json"
STATS_EVERY_S = 5.0


class BusCrashed(NengtanError):
    """A bus worker died; the agent exits so that systemd restarts it."""


def make_poller(bus: BusConfig) -> ModbusPoller:
    return rtu_poller(bus) if bus.kind == "rtu" else tcp_poller(bus)


@dataclass
class LoopStats:
    cycles: int = 0
    readings: int = 0
    bad_readings: int = 0


class Agent:
    def __init__(self, *, buses: Sequence[BusConfig], buffer: Buffer, uplink: MqttUplink,
                 max_readings: int, wake: threading.Event, stats_path: Path | None = None,
                 poller_factory: Callable[[BusConfig], ModbusPoller] = make_poller,
                 synced: Callable[[], bool] = clock_synced) -> None:
        self.buffer, self.uplink = buffer, uplink
        self._max_readings, self._wake, self._synced = max_readings, wake, synced
        self._cycles: queue.Queue[CycleDone] = queue.Queue()
        self.workers = [BusWorker(b, poller_factory(b), self._cycles, wake=wake) for b in buses]
        self._stats_path = stats_path
        self._stats_due = 0.0
        self.stats = LoopStats()
        self._ready_sent = False

    def commit(self, cycle: CycleDone) -> int:
        """Commit one finished bus cycle; the watchdog is fed only after that really happened."""
        seq = self.buffer.add(cycle.readings, taken_ms=int(cycle.started * 1000),
                              time_synced=self._synced())
        self.stats.cycles += 1
        self.stats.readings += len(cycle.readings)
        self.stats.bad_readings += sum(r.quality == "bad" for r in cycle.readings)
        sd_notify("WATCHDOG=1" if self._ready_sent else "READY=1")
        self._ready_sent = True
        return seq

    def forward(self) -> None:
        verdicts = self.uplink.pump()
        if verdicts.accepted or verdicts.rejected:
            self.buffer.end(verdicts.accepted, verdicts.rejected)
        window = self.uplink.window
        if window <= 0:
            return
        for sealed in self.buffer.begin(max_envelopes=window, max_readings=self._max_readings):
            if not self.uplink.publish(sealed):
                self.buffer.end([], [sealed.seq])

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
        self._write_stats()

    def run(self, stop: threading.Event, *, duration: float | None = None) -> None:
        for worker in self.workers:
            worker.start()
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
                          sealer=lambda envelope: seal(signer, envelope))
    wake = threading.Event()
    uplink = MqttUplink(config.mqtt, gateway=config.gateway.id, wake=wake)
    return Agent(buses=config.buses, buffer=buffer, uplink=uplink, wake=wake,
                 max_readings=config.mqtt.max_readings_per_envelope, stats_path=state / STATS_FILE)
