"""One thread per line: it owns the port, follows the line's schedule and hands each finished
cycle to the agent loop, which commits it. Lines run in parallel; meters on a line never do."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import BusConfig
from agent.modbus._poller import ModbusPoller
from agent.modbus._schedule import MeterSchedule, Schedule
from agent.modbus._stats import MeterStats
from nengtan.envelope import Reading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleDone:
    bus: str
    readings: tuple[Reading, ...]
    started: float  # wall clock
    meters: tuple[str, ...]


class BusWorker(threading.Thread):
    def __init__(self, config: BusConfig, poller: ModbusPoller, out: queue.Queue[CycleDone], *,
                 clock: Callable[[], float] = time.time, wake: threading.Event | None = None) -> None:
        super().__init__(name=f"bus {config.name}", daemon=True)
        self.config, self.poller, self._out, self._clock = config, poller, out, clock
        self._wake = wake
        self.schedule = Schedule([MeterSchedule(m.id, m.interval_s, m.counter_interval_s)
                                  for m in config.meters], clock())
        self._stop_event = threading.Event()
        self.crashed: BaseException | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def stats(self) -> dict[str, MeterStats]:
        stats = self.poller.stats()
        for meter_id, m in self.schedule.meters.items():
            stats[meter_id].backoff_failures = m.backoff.failures
            stats[meter_id].backoff_until = m.backoff.until
        return stats

    def run_cycle(self) -> CycleDone | None:
        now = self._clock()
        due = self.schedule.due(now)
        skipped = [m for m in self.schedule.meters if m not in {d.meter_id for d in due}
                   and self.schedule.meters[m].backoff.blocks(now)]
        for meter_id in skipped:
            self.poller.stats()[meter_id].skipped += 1
        if not due:
            return None
        if not self.poller.open():
            log.warning("cannot open %s; its meters are reported as bad this cycle", self.config.name)
        readings: list[Reading] = []
        for item in due:
            result = self.poller.read(item.meter_id, instants=item.instants, counters=item.counters)
            self.schedule.record(item.meter_id, silent=result.silent, now=self._clock())
            readings += result.readings
        return CycleDone(self.config.name, tuple(readings), now, tuple(d.meter_id for d in due))

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                now = self._clock()
                self.schedule.observe(now)
                pause = self.schedule.next_wake() - now
                if pause > 0:
                    self._stop_event.wait(min(pause, 1.0))
                    continue
                done = self.run_cycle()
                if done is not None and done.readings:
                    self._out.put(done)
                    if self._wake is not None:
                        self._wake.set()
        except BaseException as exc:  # the agent loop notices and exits non-zero: systemd restarts
            log.exception("bus worker %s crashed", self.config.name)
            self.crashed = exc
            if self._wake is not None:
                self._wake.set()
        finally:
            self.poller.close()
