"""A whole Nengtan chain on one machine: emulated bus, broker, receiver and agent daemons.

The demo and the hardware-in-the-loop tests both run the real daemons as subprocesses through
this module, so what the demo shows is what the tests check. Children are started with a
parent-death signal, so even a killed parent leaves no process behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import tomli_w

from agent.config import load_config
from nengtan.broker import Broker, start_broker
from nengtan.errors import NengtanError
from provisioning.identity import enrollment_for, init_gateway, write_enrollment

GATEWAY_ID = "demo-gw01"
DEMO_METERS = [("main-incomer", "chint-dtsu666", 1), ("press-line", "eastron-sdm630", 2),
               ("compressor", "chint-dtsu666", 3), ("hvac", "eastron-sdm630", 4)]
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it when its parent dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class StackError(NengtanError):
    """A part of the local chain did not start."""


@dataclass
class Stack:
    workdir: Path
    meters: list[tuple[str, str, int]] = field(default_factory=lambda: list(DEMO_METERS))
    baudrate: int = 9600
    interval_s: float = 2.0
    speedup: float = 60.0
    broker_kind: str = "auto"
    carbon: dict[str, Any] = field(default_factory=lambda: {"regime": "statistical",
                                                            "region": "henan", "year": 2023})
    absent_units: frozenset[int] = frozenset()  # configured on the gateway, never answering
    gateway_settings: dict[str, Any] = field(default_factory=dict)  # extra [gateway] keys
    timeout_ms: int = 300
    broker: Broker | None = None
    port: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def agent_config(self) -> Path:
        return self.workdir / "gateway" / "agent.toml"

    @property
    def receiver_config(self) -> Path:
        return self.workdir / "receiver.toml"

    @property
    def receiver_db(self) -> Path:
        return self.workdir / "receiver" / "receiver.db"

    @property
    def truth_file(self) -> Path:
        return self.workdir / "truth.json"

    def _spawn(self, name: str, args: list[str], *, stdout: int | IO[bytes] | None = None,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                [sys.executable, *args], stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log, stderr=log,
                preexec_fn=_die_with_parent, env=None if env is None else {**os.environ, **env},
            )
        self.processes[name] = process
        return process

    def start_emulator(self) -> str:
        """Start the emulated bus as its own process; return the serial port the agent opens."""
        args = ["-m", "hw_tests.emulator", "--baud", str(self.baudrate), "--speedup",
                str(self.speedup), "--truth", str(self.truth_file)]
        for _, model, unit in self.meters:
            if unit not in self.absent_units:
                args += ["--meter", f"{model}:{unit}"]
        process = self._spawn("emulator", args, stdout=subprocess.PIPE)
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            raise StackError(f"emulator did not start: {line!r}; see {self.workdir / 'emulator.log'}")
        self.port = line.split(" ", 1)[1]
        return self.port

    def start_broker(self) -> Broker:
        self.broker = start_broker(self.workdir / "broker", prefer=self.broker_kind)
        return self.broker

    def provision(self) -> None:
        """What a technician does: identity and config for the gateway, enrollment at the receiver."""
        assert self.broker is not None and self.port
        config = {
            "gateway": {"state_dir": str(self.workdir / "gateway" / "state"),
                        **self.gateway_settings},
            "inputs": {"modbus_rtu": [{
                "port": self.port, "baudrate": self.baudrate, "interval_s": self.interval_s,
                "timeout_ms": self.timeout_ms,
                "meters": [{"id": m, "model": model, "unit": u} for m, model, u in self.meters]}]},
            "outputs": {"mqtt": {"host": self.broker.host, "port": self.broker.port,
                                 "protocol": self.broker.protocol, "keepalive_s": 10}},
        }
        init_gateway(gateway=GATEWAY_ID, directory=self.workdir / "gateway", config=config)
        write_enrollment(enrollment_for(load_config(self.agent_config)), self.workdir / "registry")
        receiver = {
            "mqtt": {"host": self.broker.host, "port": self.broker.port,
                     "protocol": self.broker.protocol, "client_id": f"nengtan-receiver-{os.getpid()}",
                     "keepalive_s": 10},
            "storage": {"path": str(self.receiver_db)},
            "registry": {"dir": str(self.workdir / "registry")},
            "carbon": self.carbon,
        }
        self.receiver_db.parent.mkdir(parents=True, exist_ok=True)
        self.receiver_config.write_text(tomli_w.dumps(receiver))

    def start_receiver(self) -> subprocess.Popen[bytes]:
        return self._spawn("receiver", ["-m", "nengtan", "receiver", "run", "--config",
                                        str(self.receiver_config)])

    def start_agent(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._spawn("agent", ["-m", "nengtan", "agent", "run", "--config",
                                     str(self.agent_config)], env=env)

    def stop(self, name: str, *, kill: bool = False, timeout: float = 10.0) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def mute_emulator(self) -> None:
        """Silence every emulated meter (answers already on the wire complete) and wait until
        the ground-truth file can no longer change."""
        self.processes["emulator"].send_signal(signal.SIGUSR1)
        # The emulator acts within 0.2 s; the longest answer takes ~0.3 s at 9600 Bd; the truth
        # file trails the last answer by at most 0.2 s.
        time.sleep(1.5)

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def start_all(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_emulator()
        self.start_broker()
        self.provision()
        self.start_receiver()
        self.start_agent()

    def close(self) -> None:
        for name in ("agent", "receiver", "emulator"):
            self.stop(name)
        for name in list(self.processes):
            self.stop(name)
        if self.broker is not None:
            self.broker.stop()

    # -- what the tests and the demo look at ------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        """Per meter id: the energy the emulator served between its first and last read (kWh)."""
        units = json.loads(self.truth_file.read_text())["units"]
        return {m: units[str(u)] for m, _, u in self.meters}

    def agent_cycles(self) -> int:
        path = self.workdir / "gateway" / "state" / "buffer.db"
        if not path.exists():
            return 0
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            try:
                return int(conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    def agent_envelopes(self) -> list[tuple[int, int, bool]]:
        """(first cycle, last cycle, acknowledged) of every envelope the agent has sealed."""
        path = self.workdir / "gateway" / "state" / "buffer.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT seq, last, sent_ms IS NOT NULL FROM envelopes ORDER BY seq")
            return [(int(a), int(b), bool(c)) for a, b, c in rows]

    def agent_readings(self) -> list[tuple[int, str, str, int, float | None, str]]:
        """Every committed reading as (cycle seq, meter, measurement, ts_ms, value, quality)."""
        path = self.workdir / "gateway" / "state" / "buffer.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            rows = conn.execute("SELECT seq, readings FROM cycles ORDER BY seq").fetchall()
        return [(int(seq), *item) for seq, blob in rows for item in json.loads(blob)]

    def wait_for(self, what: str, predicate: Any, timeout: float, every: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(every)
        logs = {n: (self.workdir / f"{n}.log").read_text(errors="replace")[-1500:]
                for n in ("agent", "receiver", "emulator") if (self.workdir / f"{n}.log").exists()}
        raise StackError(f"timed out after {timeout:.0f} s waiting for {what}; logs: {logs}")
