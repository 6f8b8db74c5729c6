"""A synthetic backlog in a real agent buffer, and what the drain benchmark and the long-outage
test read back from the agent's and the receiver's databases.

The backlog is what an agent collects while its broker is away: realistic poll cycles (every
meter's instantaneous values and rising energy counters, read block by block on a 9600 Bd line)
committed one cycle per transaction with ``SqliteBuffer.add``, sealed later by the agent daemon
with the gateway's own key, exactly as ``agent.runner.build_agent`` wires it. The buffer's clock
is set back for each cycle to the moment it was taken, so the store looks as if the agent had
committed the cycle then: its monotonic stamp is old and the agent's live-first drain treats it
as backlog, not as live data.
"""

from __future__ import annotations

import random
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from agent.buffer import SqliteBuffer
from agent.buffer._clock import boot_id
from agent.config import load_config
from agent.identity import key_path, load_signer
from agent.runner import BUFFER_FILE, MIB
from agent.system import clock_synced
from nengtan.envelope import ClockInfo, Reading, seal

#: 25 measurements per meter: what a 3-phase meter such as the DTSU666 or SDM630 is read for.
#: (name, typical value, relative noise, decimals); counters are handled apart.
INSTANTS: tuple[tuple[str, float, float, int], ...] = (
    ("voltage_l1_n", 230.0, 0.004, 2), ("voltage_l2_n", 230.5, 0.004, 2),
    ("voltage_l3_n", 229.6, 0.004, 2), ("voltage_l1_l2", 398.6, 0.004, 2),
    ("voltage_l2_l3", 399.1, 0.004, 2), ("voltage_l3_l1", 397.9, 0.004, 2),
    ("current_l1", 41.2, 0.05, 3), ("current_l2", 39.8, 0.05, 3), ("current_l3", 40.5, 0.05, 3),
    ("current_n", 1.9, 0.2, 3),
    ("active_power_total", 27_300.0, 0.05, 1), ("active_power_l1", 9_150.0, 0.05, 1),
    ("active_power_l2", 8_980.0, 0.05, 1), ("active_power_l3", 9_170.0, 0.05, 1),
    ("reactive_power_total", 5_210.0, 0.08, 1), ("reactive_power_l1", 1_760.0, 0.08, 1),
    ("reactive_power_l2", 1_700.0, 0.08, 1), ("reactive_power_l3", 1_750.0, 0.08, 1),
    ("power_factor_total", 0.982, 0.005, 3), ("frequency", 50.0, 0.0006, 2),
)
COUNTERS: tuple[str, ...] = ("active_energy_import", "active_energy_export", "active_energy_total",
                             "reactive_energy_import", "reactive_energy_export")
PER_METER = len(INSTANTS) + len(COUNTERS)  # 25
#: which instantaneous values follow the load (currents and powers, not voltages or the factor)
_LOAD_SCALED = tuple(("power" in n and "factor" not in n) or "current" in n for n, *_ in INSTANTS)
CYCLE_S = 10.0  # the default poll period
METER_READ_MS = 240  # one meter's two requests (instants, counters) on a 9600 Bd line


def as_float32(value: float) -> float:
    """``value`` as a float32 register decodes to in the agent (e.g. 230.12 → 230.1199951171875)."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


@dataclass
class SyntheticMeters:
    """Cycles of ``meters`` three-phase meters, ``PER_METER`` readings each.

    ``values``: "decimal" gives values as a register × scale reads (230.12 V, 41.203 A,
    12345.67 kWh); "float32" gives what a float32 register decodes to in Python
    (230.1199951171875), which is what most meter models on the wire really produce.
    """

    ids: Sequence[str]
    values: str = "decimal"
    seed: int = 1

    def __post_init__(self) -> None:
        if self.values not in ("decimal", "float32"):
            raise ValueError("values must be 'decimal' or 'float32'")
        rng = random.Random(self.seed)
        self._rng = rng
        self._scale = [rng.uniform(0.3, 1.5) for _ in self.ids]  # each meter its own load
        # kWh, kWh, kWh, kvarh, kvarh; the export counters barely move.
        self.counters = [[round(rng.uniform(1_000, 90_000), 2), round(rng.uniform(0, 50), 2), 0.0,
                          round(rng.uniform(200, 20_000), 2), round(rng.uniform(0, 10), 2)]
                         for _ in self.ids]
        for c in self.counters:
            c[2] = round(c[0] + c[1], 2)
        #: energy (kWh of active_energy_import) per meter between its first and last reading
        self.first_import: list[float | None] = [None] * len(self.ids)
        self.last_import: list[float | None] = [None] * len(self.ids)

    @property
    def per_cycle(self) -> int:
        return len(self.ids) * PER_METER

    def cycle(self, taken_ms: int, interval_s: float = CYCLE_S) -> list[Reading]:
        """One poll cycle started at ``taken_ms``; counters advance by ``interval_s`` of load."""
        rng, out = self._rng, []
        f32 = self.values == "float32"
        noise = rng.random
        for m, meter in enumerate(self.ids):
            load = self._scale[m] * (1 + 0.1 * rng.uniform(-1, 1))
            ts = taken_ms + m * METER_READ_MS + rng.randint(0, 4)
            for (name, typical, spread, decimals), scaled in zip(INSTANTS, _LOAD_SCALED):
                # two uniforms: a cheap bell-shaped noise of about ``spread`` (relative)
                value = round(typical * (load if scaled else 1.0)
                              * (1 + spread * 1.7 * (noise() + noise() - 1)), decimals)
                out.append(Reading(meter, name, ts, as_float32(value) if f32 else value, "good"))
            kw = 27.3 * load
            c = self.counters[m]
            c[0] = round(c[0] + kw * interval_s / 3600, 2)
            c[3] = round(c[3] + kw * 0.19 * interval_s / 3600, 2)
            c[2] = round(c[0] + c[1], 2)
            ts_counters = ts + METER_READ_MS // 2 + rng.randint(0, 4)
            for name, value in zip(COUNTERS, c):
                out.append(Reading(meter, name, ts_counters, as_float32(value) if f32 else value,
                                   "good"))
            served = as_float32(c[0]) if f32 else c[0]
            if self.first_import[m] is None:
                self.first_import[m] = served
            self.last_import[m] = served
        return out

    def energy(self) -> dict[str, float]:
        """kWh of active_energy_import per meter between its first and last cycle."""
        return {meter: float(last) - float(first) for meter, first, last
                in zip(self.ids, self.first_import, self.last_import)
                if first is not None and last is not None}


class PastClock:
    """The buffer's clock source, set to the moment each cycle was taken: boot id of this boot,
    CLOCK_BOOTTIME and wall clock moved back together (the monotonic stamp may come out negative
    when the backlog is older than this boot; it then simply reads as old)."""

    def __init__(self) -> None:
        self.age_ms = 0

    def __call__(self) -> ClockInfo:
        mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000
        return ClockInfo(boot_id(), mono - self.age_ms, time.time_ns() // 1_000_000 - self.age_ms)


@dataclass(frozen=True)
class Prefill:
    cycles: int
    readings: int
    first_seq: int
    last_seq: int
    first_taken_ms: int
    last_taken_ms: int
    seconds: float


def prefill(config_file: Path, meters: SyntheticMeters, *, cycles: int, end_ms: int,
            interval_s: float = CYCLE_S,
            progress: Callable[[int], None] | None = None) -> Prefill:
    """Commit ``cycles`` backlog cycles, ``interval_s`` apart, the last one taken at ``end_ms``,
    into the buffer of the gateway configured in ``config_file`` (one transaction per cycle, as
    the agent commits them). The agent must not be running."""
    config = load_config(config_file)
    signer = load_signer(key_path(config.gateway.key_file))
    state = Path(config.gateway.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    clock = PastClock()
    buffer = SqliteBuffer(state / BUFFER_FILE, gateway=config.gateway.id,
                          sealer=lambda envelope: seal(signer, envelope),
                          max_bytes=config.gateway.buffer_max_mb * MIB,
                          full_policy=config.gateway.buffer_full_policy, clock=clock)
    synced = clock_synced()  # what the agent on this machine would record
    step_ms = int(interval_s * 1000)
    first_taken = end_ms - (cycles - 1) * step_ms
    started = time.monotonic()
    seqs: list[int] = []
    readings = 0
    try:
        for i in range(cycles):
            taken = first_taken + i * step_ms
            clock.age_ms = max(0, int(time.time() * 1000) - taken)
            batch = meters.cycle(taken, interval_s)
            seqs.append(buffer.add(batch, taken_ms=taken, time_synced=synced))
            readings += len(batch)
            if progress is not None and (i + 1) % 500 == 0:
                progress(i + 1)
    finally:
        buffer.close()
    return Prefill(len(seqs), readings, seqs[0] if seqs else 0, seqs[-1] if seqs else 0,
                   first_taken, end_ms, time.monotonic() - started)


# -- reading back ---------------------------------------------------------------------------------

def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def agent_cycle_sizes(buffer_db: Path) -> dict[int, int]:
    """Readings per committed cycle seq of the agent's buffer."""
    with closing(_ro(buffer_db)) as conn:
        return {int(seq): int(n) for seq, n in conn.execute("SELECT seq, n FROM cycles")}


def agent_cycle_times(buffer_db: Path) -> dict[int, int]:
    """taken_ms (wall clock) per committed cycle seq."""
    with closing(_ro(buffer_db)) as conn:
        return {int(s): int(t) for s, t in conn.execute("SELECT seq, taken_ms FROM cycles")}


@dataclass(frozen=True)
class AgentEnvelope:
    seq: int
    last: int
    token_bytes: int
    readings: int
    sealed_ms: int
    sent_ms: int | None


def agent_envelopes(buffer_db: Path) -> list[AgentEnvelope]:
    with closing(_ro(buffer_db)) as conn:
        return [AgentEnvelope(*row) for row in conn.execute(
            "SELECT seq, last, length(token), readings, sealed_ms, sent_ms FROM envelopes "
            "ORDER BY seq")]


@dataclass(frozen=True)
class ReceivedEnvelope:
    seq: int
    last: int
    received_ms: int


def receiver_envelopes(receiver_db: Path, gateway: str) -> list[ReceivedEnvelope]:
    """The receiver's stored envelopes of ``gateway`` in arrival order."""
    if not receiver_db.exists():
        return []
    with closing(_ro(receiver_db)) as conn:
        try:
            return [ReceivedEnvelope(*row) for row in conn.execute(
                "SELECT seq, last, received_ms FROM envelopes WHERE gateway = ? "
                "ORDER BY received_ms, seq", (gateway,))]
        except sqlite3.OperationalError:  # the receiver has not created its tables yet
            return []


def receiver_cycle_count(receiver_db: Path, gateway: str) -> int:
    """Cycles covered by the stored envelopes (cheap: one row per envelope)."""
    if not receiver_db.exists():
        return 0
    with closing(_ro(receiver_db)) as conn:
        try:
            row = conn.execute("SELECT COALESCE(SUM(last - seq + 1), 0) FROM envelopes "
                               "WHERE gateway = ?", (gateway,)).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0])


def receiver_cycle_sizes(receiver_db: Path, gateway: str) -> dict[int, int]:
    """Readings stored per cycle seq (the primary key forbids a reading stored twice)."""
    with closing(_ro(receiver_db)) as conn:
        return {int(s): int(n) for s, n in conn.execute(
            "SELECT seq, COUNT(*) FROM readings WHERE gateway = ? GROUP BY seq", (gateway,))}


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a running process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


class ThrottledRelay:
    """A TCP relay 127.0.0.1:port → target whose upstream direction (client → target) carries at
    most ``rate`` bytes per second, as a gateway's cellular uplink would; answers come back
    unthrottled. A flow whose target does not answer is closed at once (the broker is down)."""

    BURST = 16_384

    def __init__(self, target: tuple[str, int], rate: float) -> None:
        self._target, self.rate = target, rate
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.up_bytes = self.down_bytes = self.flows = 0
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, name="relay accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.flows += 1
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True,
                             name="relay up").start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True,
                             name="relay down").start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        tokens, last = float(self.BURST), time.monotonic()
        try:
            while data := src.recv(self.BURST):
                if up:
                    now = time.monotonic()
                    tokens = min(self.BURST, tokens + (now - last) * self.rate) - len(data)
                    last = now
                    if tokens < 0:
                        time.sleep(-tokens / self.rate)
                    self.up_bytes += len(data)
                else:
                    self.down_bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):  # one side ended: end the other too, as a relay would
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of its thread
        except OSError:
            pass
        self._listener.close()
        for sock in self._socks:
            sock.close()
