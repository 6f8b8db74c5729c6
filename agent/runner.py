"""The agent loop: poll every bus when its cycle is due, commit each cycle, then feed the uplink.

Polling never waits for the network: a cycle is committed to the buffer first, whatever the
broker is doing. Envelopes are sealed only when the uplink can take them, so a backlog built up
offline leaves in large envelopes instead of one per cycle.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.buffer import Buffer, SqliteBuffer
from agent.config import AgentConfig
from agent.identity import key_path, load_signer
from agent.inputs.modbus_rtu.bus import RtuBus
from agent.outputs.mqtt.uplink import MqttUplink
from agent.system import clock_synced, sd_notify
from nengtan.envelope import Reading, seal
from nengtan.errors import MeterError

log = logging.getLogger(__name__)
BUFFER_FILE = "buffer.db"


def next_aligned(now: float, interval: float) -> float:
    """The next start time on a multiple of ``interval`` on the wall clock (:00, :10, :20 …)."""
    return (math.floor(now / interval) + 1) * interval


@dataclass
class LoopStats:
    cycles: int = 0
    readings: int = 0
    bad_readings: int = 0


class Agent:
    def __init__(self, *, buses: Sequence[RtuBus], buffer: Buffer, uplink: MqttUplink,
                 max_readings: int, wake: threading.Event,
                 clock: Callable[[], float] = time.time,
                 synced: Callable[[], bool] = clock_synced) -> None:
        self.buses, self.buffer, self.uplink = list(buses), buffer, uplink
        self._max_readings, self._wake, self._clock, self._synced = max_readings, wake, clock, synced
        self._due = {id(b): next_aligned(clock(), b.config.interval_s) for b in self.buses}
        self.stats = LoopStats()
        self._ready_sent = False

    def poll(self, bus: RtuBus) -> int:
        """Read every meter on ``bus`` and commit them as one cycle; return its sequence number."""
        if not bus.open():
            log.warning("cannot open %s; its meters are reported as bad this cycle", bus.config.port)
        readings: list[Reading] = []
        for meter in bus.config.meters:
            try:
                readings += bus.read_meter(meter)
            except MeterError as exc:  # read_meter flags per block; this is a last line of defence
                log.warning("meter %s: %s", meter.id, exc)
        taken_ms = int(self._clock() * 1000)
        seq = self.buffer.add(readings, taken_ms=taken_ms, time_synced=self._synced())
        self.stats.cycles += 1
        self.stats.readings += len(readings)
        self.stats.bad_readings += sum(r.quality == "bad" for r in readings)
        # The watchdog is fed only after a poll and a commit really happened.
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

    def step(self) -> float:
        """Do whatever is due now; return how long the loop may sleep."""
        now = self._clock()
        for bus in self.buses:
            if now >= self._due[id(bus)]:
                self.poll(bus)
                self._due[id(bus)] = next_aligned(self._clock(), bus.config.interval_s)
        self.forward()
        return max(0.0, min(self._due.values()) - self._clock())

    def run(self, stop: threading.Event, *, duration: float | None = None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            pause = self.step()
            self._wake.wait(min(pause, 0.5))
            self._wake.clear()

    def close(self) -> None:
        verdicts = self.uplink.close()
        if verdicts.accepted or verdicts.rejected:
            self.buffer.end(verdicts.accepted, verdicts.rejected)
        for bus in self.buses:
            bus.close()
        self.buffer.close()


def build_agent(config: AgentConfig) -> Agent:
    """Wire up an agent from a validated config: the first place that touches files or ports."""
    signer = load_signer(key_path(config.gateway.key_file))
    config.gateway.state_dir.mkdir(parents=True, exist_ok=True)
    buffer = SqliteBuffer(Path(config.gateway.state_dir) / BUFFER_FILE, gateway=config.gateway.id,
                          sealer=lambda envelope: seal(signer, envelope))
    wake = threading.Event()
    uplink = MqttUplink(config.mqtt, gateway=config.gateway.id, wake=wake)
    return Agent(buses=[RtuBus(b) for b in config.buses], buffer=buffer, uplink=uplink,
                 max_readings=config.mqtt.max_readings_per_envelope, wake=wake)
