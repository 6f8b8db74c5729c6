"""Start a throw-away local MQTT broker for the demo and the tests.

Mosquitto when it is on PATH (MQTT 5 and 3.1.1); otherwise amqtt from PyPI, which speaks 3.1.1
only, so a fresh machine needs nothing but Python. The broker listens on loopback only.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nengtan.errors import NengtanError


class BrokerError(NengtanError):
    """A local broker could not be started."""

    hint = "Install Mosquitto (Debian package `mosquitto`) or `pip install amqtt`."


# Brokers are stopped and restarted on the same port (outage tests), so their port must stay
# free while they are down: pick it below the kernel's ephemeral range (32768-60999 on Linux),
# where no outgoing connection or bind(0) elsewhere can take it, and give each parallel pytest
# worker its own slice, so two workers never probe the same numbers.
_PORT_LOW, _PORT_HIGH = 20000, 32000


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    width = (_PORT_HIGH - _PORT_LOW) // workers
    low = _PORT_LOW + (int(worker) % workers if worker.isdigit() else 0) * width
    for _ in range(100):
        port = random.randrange(low, low + width)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # that slice is full: any free port will have to do
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    host: str
    port: int
    protocol: str  # "5" or "3.1.1": the newest the broker speaks
    kind: str
    process: subprocess.Popen[bytes]
    workdir: Path
    extra_config: tuple[str, ...] = ()  # Mosquitto lines appended to the generated config

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        """Start the same broker again on the same port (for outage tests)."""
        self.stop()
        self.process = _spawn(self.kind, self.workdir, self.port, self.extra_config).process


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerError(f"broker exited at start: {log.read_text(errors='replace')[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise BrokerError(f"broker did not listen on 127.0.0.1:{port} within 15 s")


def _spawn(kind: str, workdir: Path, port: int, extra_config: Sequence[str] = ()) -> Broker:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{kind}.log"
    if kind == "mosquitto":
        conf = workdir / "mosquitto.conf"
        # Persistence keeps the receiver's session (and what is queued for it) across a broker
        # restart, as a production broker would; without it a restart silently drops messages.
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence true",
                 f"persistence_location {workdir}/", "max_queued_messages 100000",
                 "log_dest stderr"]
        if os.geteuid() == 0:
            lines.append("user root")  # the work dir is not the mosquitto user's to write
        lines += extra_config  # Mosquitto takes the last value of a repeated numeric option
        conf.write_text("\n".join(lines) + "\n")
        cmd = [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)]
        protocol = "5"
    else:
        conf = workdir / "amqtt.yaml"
        conf.write_text(f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
                        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                        "    allow_anonymous: true\n")
        if extra_config:
            raise BrokerError("extra_config holds Mosquitto lines, which amqtt cannot take")
        cmd = [sys.executable, "-c", "from amqtt.scripts.broker_script import main; main()",
               "-c", str(conf)]
        protocol = "3.1.1"
    with log.open("ab") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _wait_listening(port, process, log)
    return Broker("127.0.0.1", port, protocol, kind, process, workdir, tuple(extra_config))


def start_broker(workdir: Path, *, prefer: str = "auto", port: int | None = None,
                 extra_config: Sequence[str] = ()) -> Broker:
    """Start Mosquitto (or amqtt when Mosquitto is missing, or when ``prefer='amqtt'``).

    ``extra_config``: Mosquitto config lines added after the generated ones, e.g.
    ``max_queued_messages 0`` for a benchmark's unlimited queue.
    """
    kind = prefer
    if prefer == "auto":
        kind = "mosquitto" if shutil.which("mosquitto") else "amqtt"
    if kind == "amqtt":
        try:
            import amqtt  # noqa: F401
        except ImportError as exc:
            raise BrokerError("Mosquitto is not on PATH and amqtt is not installed") from exc
    return _spawn(kind, workdir, port or free_port(), extra_config)
