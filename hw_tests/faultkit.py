"""The real agent daemon against an emulated bus served from the test process, so a test can flip
faults on the line while the agent polls it, and read what the agent committed.

The agent runs as ``python -m nengtan agent run`` (a subprocess, started by ``nengtan.stack``); no
broker is needed: its MQTT config points at a local port nobody listens on, so it keeps polling
and buffering, which is all these tests look at. Example::

    with AgentRig(tmp_path) as rig:
        rig.wait_for_cycle("all meters good", lambda c: c.all_good("u1", "u2", "u3"))
        rig.bus.set_faults(2, silent=True)
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw_tests.emulator import PtyBus, start_bus
from nengtan.stack import Stack
from provisioning.identity import init_gateway

GATEWAY_ID = "faults-gw01"
# (meter id, model, unit): the meter polled between the other two is the one faults go to.
METERS = [("u1", "chint-dtsu666", 1), ("u2", "eastron-sdm630", 2), ("u3", "chint-dtsu666", 3)]

# Wire form of a reading in the buffer: [meter_id, measurement, ts_ms, value, quality].
Row = tuple[str, str, int, float | None, str]


@dataclass(frozen=True)
class Cycle:
    """One committed poll cycle, as the agent's buffer holds it."""

    seq: int
    taken_ms: int
    readings: tuple[Row, ...]

    def of(self, meter: str) -> list[Row]:
        return [r for r in self.readings if r[0] == meter]

    def qualities(self, meter: str) -> set[str]:
        """The qualities of ``meter``'s readings; empty if the cycle did not read it."""
        return {r[4] for r in self.of(meter)}

    def measurements(self, meter: str) -> set[str]:
        return {r[1] for r in self.of(meter)}

    def all_good(self, *meters: str) -> bool:
        """Every meter named was read, and every one of its readings is good."""
        return all(self.qualities(m) == {"good"} for m in meters)

    def values(self, meter: str) -> dict[str, float]:
        return {r[1]: r[3] for r in self.of(meter) if r[3] is not None and r[4] != "bad"}

    def summary(self, meters: Sequence[str]) -> str:
        """``seq 12 @+3.0s u1=good u2=bad u3=-`` (``-``: not read), for failure messages."""
        def q(meter: str) -> str:
            found = self.qualities(meter)
            return "-" if not found else "/".join(sorted(found))
        return f"seq {self.seq} " + " ".join(f"{m}={q(m)}" for m in meters)


def free_tcp_port() -> int:
    """A localhost port nobody listens on right now (the agent's broker that never answers)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RigError(AssertionError):
    """The agent did not get where a test waited for it to get; carries the evidence."""


class AgentRig:
    """An emulated bus in this process and the real agent daemon polling it.

    Args:
        workdir: gateway identity, config, state (buffer.db, bus-stats.json) and agent.log.
        meters: (meter id, model, unit) on the one bus, in polling order.
        interval_s, timeout_ms: the bus's poll period and response timeout in the agent config.
        speedup: emulated seconds per real second (energy counters move visibly).
    """

    def __init__(self, workdir: Path, *, meters: Sequence[tuple[str, str, int]] = METERS,
                 interval_s: float = 1.0, timeout_ms: int = 200, baudrate: int = 9600,
                 speedup: float = 60.0, seed: int = 7) -> None:
        self.workdir = workdir
        self.meters = list(meters)
        self.ids = [m for m, _, _ in self.meters]
        self.interval_s, self.timeout_ms, self.baudrate = interval_s, timeout_ms, baudrate
        self._speedup, self._seed = speedup, seed
        self.stack = Stack(workdir, meters=self.meters, baudrate=baudrate, interval_s=interval_s)
        self._bus: PtyBus | None = None

    @property
    def bus(self) -> PtyBus:
        assert self._bus is not None, "the rig is not started"
        return self._bus

    @property
    def state_dir(self) -> Path:
        return self.workdir / "gateway" / "state"

    @property
    def buffer_db(self) -> Path:
        return self.state_dir / "buffer.db"

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> AgentRig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._bus = start_bus([(model, unit) for _, model, unit in self.meters],
                              baudrate=self.baudrate, speedup=self._speedup, seed=self._seed)
        self.stack.port = self._bus.port
        self.provision()
        self.stack.start_agent()
        return self

    def provision(self) -> None:
        config = {
            "gateway": {"state_dir": str(self.state_dir)},
            "inputs": {"modbus_rtu": [{
                "port": self.bus.port, "baudrate": self.baudrate, "interval_s": self.interval_s,
                "timeout_ms": self.timeout_ms,
                "meters": [{"id": m, "model": model, "unit": u} for m, model, u in self.meters]}]},
            "outputs": {"mqtt": {"host": "127.0.0.1", "port": free_tcp_port(), "keepalive_s": 10}},
        }
        init_gateway(gateway=GATEWAY_ID, directory=self.workdir / "gateway", config=config)

    def alive(self) -> bool:
        return self.stack.alive("agent")

    def close(self) -> None:
        self.stack.close()
        if self._bus is not None:
            self._bus.close()

    def __enter__(self) -> AgentRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the agent did ----------------------------------------------------------------------

    def cycles(self, after_seq: int = 0) -> list[Cycle]:
        """Committed cycles with ``seq > after_seq``, oldest first (read-only; WAL lets the
        agent go on writing meanwhile)."""
        if not self.buffer_db.exists():
            return []
        uri = f"file:{self.buffer_db}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                rows = conn.execute("SELECT seq, taken_ms, readings FROM cycles WHERE seq > ? "
                                    "ORDER BY seq", (after_seq,)).fetchall()
        except sqlite3.OperationalError:  # the agent has not created the table yet
            return []
        return [Cycle(int(seq), int(taken), tuple(tuple(r) for r in json.loads(blob)))
                for seq, taken, blob in rows]

    def last_seq(self) -> int:
        found = self.cycles_tail(1)
        return found[-1].seq if found else 0

    def cycles_tail(self, n: int) -> list[Cycle]:
        if not self.buffer_db.exists():
            return []
        uri = f"file:{self.buffer_db}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                rows = conn.execute("SELECT seq, taken_ms, readings FROM cycles "
                                    "ORDER BY seq DESC LIMIT ?", (n,)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [Cycle(int(seq), int(taken), tuple(tuple(r) for r in json.loads(blob)))
                for seq, taken, blob in reversed(rows)]

    def bus_stats(self) -> dict[str, Any]:
        """The agent's own per-meter counters (bus-stats.json, rewritten every few seconds)."""
        try:
            doc: dict[str, Any] = json.loads((self.state_dir / "bus-stats.json").read_text())
        except (OSError, ValueError):
            return {}
        return {meter: stats for bus in doc.get("buses", {}).values()
                for meter, stats in bus.items()}

    def agent_log(self, tail: int = 3000) -> str:
        path = self.workdir / "agent.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def evidence(self, cycles: Sequence[Cycle] = ()) -> str:
        """What a failure message should show: recent cycles, both sides' counters, the log."""
        shown = list(cycles) or self.cycles_tail(12)
        emulator = {unit: vars(s) for unit, s in self.bus.stats.items()}
        agent = {m: {k: s.get(k) for k in ("requests", "ok", "silent", "garbled", "exceptions",
                                             "skipped", "backoff_failures", "last_error")}
                 for m, s in self.bus_stats().items()}
        return (f"agent alive: {self.alive()}\ncycles:\n  "
                + "\n  ".join(c.summary(self.ids) for c in shown[-20:])
                + f"\nemulator stats: {emulator}\nagent bus-stats: {agent}"
                + f"\nagent.log tail:\n{self.agent_log()}")

    def wait_for_cycle(self, what: str, predicate: Callable[[Cycle], bool], *, timeout: float,
                       after_seq: int = 0) -> Cycle:
        """The first cycle after ``after_seq`` that satisfies ``predicate``, waiting for it."""
        deadline = time.monotonic() + timeout
        seen = after_seq
        while True:
            for cycle in self.cycles(seen):
                seen = cycle.seq
                if predicate(cycle):
                    return cycle
            if not self.alive():
                raise RigError(f"the agent died waiting for {what}\n{self.evidence()}")
            if time.monotonic() >= deadline:
                raise RigError(f"no cycle with {what} within {timeout:.0f} s\n{self.evidence()}")
            time.sleep(0.1)

    def wait_for_cycles(self, n: int, *, after_seq: int, timeout: float) -> list[Cycle]:
        """The first ``n`` cycles after ``after_seq``, waiting for them."""
        deadline = time.monotonic() + timeout
        while len(found := self.cycles(after_seq)) < n:
            if not self.alive():
                raise RigError(f"the agent died waiting for {n} cycles\n{self.evidence()}")
            if time.monotonic() >= deadline:
                raise RigError(f"only {len(found)} of {n} cycles within {timeout:.0f} s\n"
                               f"{self.evidence()}")
            time.sleep(0.1)
        return found[:n]
