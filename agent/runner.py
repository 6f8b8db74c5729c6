"""The agent loop: bus workers read the meters; this loop commits each finished cycle to the
buffer (one transaction, one sequence number) and then feeds the uplink.

Polling never waits for the network: a cycle is committed first, whatever the broker is doing.
Envelopes are sealed only while the uplink is connected, so a backlog built up offline leaves in
large envelopes instead of one per cycle; once connected, sealing goes on (a bounded amount per
step) even while the send window is full, so live cycles are sealed, and sent first, within
about a minute while days of backlog drain behind them.

Checkpoints (both modes): a signed statement of how far the sealed chain reaches, published every
``checkpoint_every_s``, after every (re)connect and once more on a clean stop; never buffered,
never in the envelopes' window (``agent.outputs.mqtt.delivery``). In one_way mode (a data diode)
nothing waits for an acknowledgement: an envelope counts as sent once written to the socket, the
``Resender`` sends it again ``redundancy - 1`` times, ``resend_delay_s`` apart, and a clean stop
pushes out whatever is still owed before the last checkpoint.

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

from agent.buffer import Buffer, BufferFull, SqliteBuffer, system_clock
from agent.health import HealthPublisher, snapshot
from agent.config import AgentConfig, BusConfig
from agent.identity import key_path, load_signer
from agent.inputs.modbus_rtu.bus import rtu_poller
from agent.inputs.modbus_tcp.bus import tcp_poller
from agent.modbus._poller import ModbusPoller
from agent.modbus._stats import write_stats
from agent.modbus._worker import BusWorker, CycleDone
from agent.outputs.mqtt.delivery import Checkpoints, Resender
from agent.outputs.mqtt.uplink import MqttUplink
from agent.system import clock_synced, sd_notify
from nengtan.checkpoint import seal_checkpoint
from nengtan.envelope import seal
from nengtan.errors import NengtanError, StoreError

log = logging.getLogger(__name__)
BUFFER_FILE = "buffer.db"
STATS_FILE = "bus-stats.json"
STATS_EVERY_S = 5.0
HISTORY_EVERY_H = 1
MIB = 1024 * 1024
CLOSE_DRAIN_S = 5.0  # a clean stop: one_way pushes out what it owes for this long, at most
CLOSE_CHECKPOINT_S = 1.0  # a clean stop: acknowledged mode waits this long for a checkpoint slot
SEED_LIMIT = 10_000  # one_way start-up: envelopes sent just before, scheduled for copies again


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
                 health: HealthPublisher | None = None, checkpoints: Checkpoints | None = None,
                 resender: Resender | None = None) -> None:
        self.buffer, self.uplink, self.health = buffer, uplink, health
        self.checkpoints, self.resender = checkpoints, resender
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

    def forward(self, *, send: bool = True) -> None:
        """Record what the uplink reports, then (``send``) publish: copies due, new envelopes,
        a checkpoint if one is due."""
        verdicts = self.uplink.pump()
        if verdicts.accepted or verdicts.rejected:
            self.buffer.end(verdicts.accepted, verdicts.rejected)
        if self.resender is not None:
            self.resender.sent(verdicts.accepted)
            self.resender.copied(verdicts.copied)
            self.resender.lost(verdicts.uncopied)
        if not send or not self.uplink.connected:
            return  # offline: cycles wait unsealed, to leave in large envelopes later
        if self.resender is not None:
            self._resend()
        # With a full window this still seals (bounded work) and returns nothing.
        window = max(self.uplink.window, 0)
        for sealed in self.buffer.begin(max_envelopes=window, max_readings=self._max_readings):
            if not self.uplink.publish(sealed):
                self.buffer.end([], [sealed.seq])
        self._checkpoint()

    def _resend(self) -> None:
        """one_way: publish the copies that are due, within the window (before new envelopes:
        they are the older debt, and there are never more than redundancy - 1 per envelope)."""
        assert self.resender is not None
        due = self.resender.due(max(self.uplink.window, 0))
        if not due:
            return
        found = {s.seq: s for s in self.buffer.sealed(due)}
        self.resender.forget(seq for seq in due if seq not in found)
        for seq in due:
            if seq in found and not self.uplink.publish(found[seq], copy=True):
                self.resender.lost([seq])

    def _checkpoint(self, *, force: bool = False) -> bool:
        """Publish a checkpoint if one is due (or ``force``) and the link can take it now."""
        cp = self.checkpoints
        if cp is None:
            return False
        session = self.uplink.sessions
        if not (force or cp.due(session)) or not self.uplink.checkpoint_ready:
            return False
        head = self.buffer.chain_head()
        if head is None:
            cp.postpone(session)  # a migrated store whose head is gone: wait for the next seal
            return False
        if not self.uplink.publish_checkpoint(cp.token(self.buffer.epoch, head)):
            return False
        cp.done(session)
        return True

    def _seed_resends(self) -> None:
        """one_way start-up: the copies owed before a restart were in RAM; schedule the
        envelopes sent within the last (redundancy - 1) × resend_delay_s again (by the wall
        clock, so after a clock step this is only a best effort; checkpoints show what is lost)."""
        if self.resender is None or self.resender.window_s <= 0:
            return
        since = int((time.time() - self.resender.window_s) * 1000)
        try:
            self.resender.sent(self.buffer.recently_sent(since_ms=since, limit=SEED_LIMIT))
        except StoreError as exc:
            log.error("cannot read the recently sent envelopes: %s", exc)

    def _last_words(self) -> None:
        """A clean stop, while connected. one_way: push out everything still owed (the rest of
        the cycles, every copy at once rather than never) for up to CLOSE_DRAIN_S, then the final
        checkpoint, ``redundancy`` times. acknowledged: one final checkpoint, if a slot frees
        within CLOSE_CHECKPOINT_S. The receiver then knows how far the stream reaches."""
        if self.checkpoints is None and self.resender is None:
            return
        start = time.monotonic()
        if self.resender is None:
            while self.uplink.connected and time.monotonic() - start < CLOSE_CHECKPOINT_S:
                self.forward(send=False)
                if self._checkpoint(force=True):
                    return
                self._pause()
            return
        self.resender.flush()
        while self.uplink.connected and time.monotonic() - start < CLOSE_DRAIN_S:
            self.forward()
            if self.uplink.idle and self.resender.pending == 0 and self._all_sent():
                break
            self._pause()
        finals = self.resender.redundancy if self.checkpoints is not None else 0
        while finals and self.uplink.connected and time.monotonic() - start < CLOSE_DRAIN_S:
            self.forward()
            if self._checkpoint(force=True):
                finals -= 1
            else:
                self._pause()

    def _pause(self) -> None:
        self._wake.wait(0.05)
        self._wake.clear()

    def _all_sent(self) -> bool:
        stats = self.buffer.stats()
        return stats.unsealed_cycles == 0 and stats.unsent_envelopes == 0

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
        self._seed_resends()
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
        try:
            self._last_words()
        except Exception:  # a stop must still close the uplink and the buffer
            log.exception("could not publish the last envelopes and checkpoint")
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
    mq = config.mqtt
    uplink = MqttUplink(mq, gateway=config.gateway.id, wake=wake)
    checkpoints = Checkpoints(gateway=config.gateway.id, every_s=mq.checkpoint_every_s,
                              sign=lambda checkpoint: seal_checkpoint(signer, checkpoint),
                              clock=system_clock)
    resender = (Resender(redundancy=mq.redundancy, delay_s=mq.resend_delay_s) if mq.one_way
                else None)
    if mq.one_way:
        log.info("one_way mode: no acknowledgement is relied on; every envelope is sent %s; a "
                 "checkpoint every %d s", "once" if mq.redundancy == 1 else
                 f"{mq.redundancy} times, {mq.resend_delay_s:g} s apart", mq.checkpoint_every_s)
    return Agent(buses=config.buses, buffer=buffer, uplink=uplink, wake=wake,
                 max_readings=mq.max_readings_per_envelope, stats_path=state / STATS_FILE,
                 history_days=config.gateway.history_days,
                 health=HealthPublisher(uplink, every_s=mq.status_every_s),
                 checkpoints=checkpoints, resender=resender)
