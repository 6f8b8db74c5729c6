"""Real ``nengtan receiver run`` processes against a real Mosquitto, fed by a publisher of signed
envelopes whose energy counters have a known ground truth (imported by name, like
``uplink_helpers``: this folder has no __init__.py).

Shared by the crash tests: several receivers on one shared subscription, and one receiver killed
with SIGKILL again and again. What they check is the same: every envelope stored exactly once,
and hourly kWh rollups equal to the amounts computed here from the published counter values.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
import tomli_w
from paho.mqtt.enums import CallbackAPIVersion

from cloud_receiver.rollups import rebuild
from cloud_receiver.store import Store, open_store
from nengtan.broker import Broker, start_broker
from nengtan.envelope import Cycle, Envelope, Reading, envelope_hash, seal
from nengtan.jws import Ed25519Signer, b64url
from nengtan.measurements import ENERGY_IMPORT
from nengtan.stack import _die_with_parent
from tests.helpers import mosquitto_binary

PREFIX = "nengtan/v1"
T0 = 1_748_736_000_000  # 2025-06-01T00:00:00Z
HOUR_MS = 3_600_000
TZ = ZoneInfo("Asia/Shanghai")
# Wait for the receiver's subscription (or a drain) this long at most. A cold interpreter
# start on a loaded 2-core machine takes 1-3 s.
START_TIMEOUT_S = 30.0


def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Broker:
    """A persistent Mosquitto (``nengtan.broker``: persistence on, 100,000 queued per client)."""
    binary = mosquitto_binary()  # skips (fails in CI) without Mosquitto
    monkeypatch.setenv("PATH", os.environ["PATH"] + os.pathsep + os.path.dirname(binary))
    return start_broker(tmp_path / "broker", prefer="mosquitto")


# -- storage -------------------------------------------------------------------------------------


@dataclass
class Storage:
    """Where the receivers under test keep their data: a ``[storage]`` section and a way for the
    test to open the same store."""

    kind: str  # "sqlite" or "postgresql"
    section: dict[str, str]
    target: str  # what open_store takes
    _watch: Store | None = field(default=None, repr=False)

    def open(self) -> Store:
        return open_store(self.target, create=False)

    def envelopes(self) -> int:
        """Envelopes stored so far. Polled often, so through one store kept open (opening a
        PostgreSQL store connects and checks the migrations)."""
        if self._watch is None:
            self._watch = self.open()
        return sum(s.envelopes for s in self._watch.streams())

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def integrity(self) -> str:
        """SQLite's own check of the file after the kills; PostgreSQL has no such pragma."""
        if self.kind != "sqlite":
            return "ok"
        with sqlite3.connect(f"file:{self.target}?mode=ro", uri=True, timeout=10) as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


STORAGE_KINDS = ("sqlite", "postgresql")


@contextmanager
def storage_for(kind: str, tmp_path: Path) -> Iterator[Storage]:
    """A SQLite file, or a PostgreSQL schema of the test's own (dropped afterwards; skipped
    without a server, failed on CI): the production setup for several receivers."""
    if kind == "sqlite":
        path = tmp_path / "receiver.db"
        storage = Storage("sqlite", {"path": str(path)}, str(path))
        try:
            yield storage
        finally:
            storage.close()
        return
    from tests.integration.receiver.pg_helpers import fresh_schema

    with fresh_schema() as (_, url):
        storage = Storage("postgresql", {"url": url}, url)
        try:
            yield storage
        finally:
            storage.close()  # before the schema is dropped


# -- the plant: gateways, envelopes and the ground truth ----------------------------------------


@dataclass
class SimGateway:
    gateway: str
    signer: Ed25519Signer
    meters: tuple[str, ...]
    head: str | None = None
    counters: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, str]:
        return {"gateway": self.gateway, "alg": self.signer.alg, "kid": self.signer.kid,
                "public_key": b64url(self.signer.public_bytes),
                "enrolled_at": "2025-05-30T09:00:00+08:00"}


Bucket = tuple[str, str, int]  # gateway, meter, start of the hour (Unix ms)


@dataclass
class Plant:
    """Sealed messages in publishing order (gateways interleaved, as on a shared broker) and
    what the hourly rollups must come to."""

    gateways: list[SimGateway]
    messages: list[tuple[str, bytes]]
    readings: int
    truth: dict[Bucket, tuple[float, int]]  # kWh and intervals per bucket


def build_plant(rng: Random, *, gateways: int, meters: int, cycles: int,
                cycles_per_envelope: int) -> Plant:
    """1-minute cycles from T0, each with every meter's energy counter and power.

    The ground truth is computed here, independently of cloud_receiver.rollups: consecutive
    counter values of a meter make an interval, booked to the hour holding its end - 1 ms.
    Some readings fall exactly on the hour, so that rule is exercised.
    """
    from cryptography.hazmat.primitives.asymmetric import ed25519

    sims = [SimGateway(f"gw-fleet-{g:02d}", Ed25519Signer(ed25519.Ed25519PrivateKey.generate()),
                       tuple(f"m{m}" for m in range(1, meters + 1)))
            for g in range(1, gateways + 1)]
    truth: dict[Bucket, list[float]] = defaultdict(lambda: [0.0, 0])
    last_point: dict[tuple[str, str], tuple[int, float]] = {}
    per_gateway: list[list[tuple[str, bytes]]] = []
    readings = 0
    for sim in sims:
        out: list[tuple[str, bytes]] = []
        for first in range(1, cycles + 1, cycles_per_envelope):
            batch: list[Cycle] = []
            for seq in range(first, min(first + cycles_per_envelope, cycles + 1)):
                row: list[Reading] = []
                for meter in sim.meters:
                    ts = T0 + seq * 60_000 + rng.choice((0, 0, rng.randrange(1, 2_000)))
                    value = round(sim.counters.get(meter, rng.uniform(1_000, 90_000))
                                  + rng.uniform(0.0, 3.0), 3)
                    sim.counters[meter] = value
                    row.append(Reading(meter, ENERGY_IMPORT, ts, value, "good"))
                    row.append(Reading(meter, "active_power_total", ts,
                                       round(rng.uniform(0, 180), 2), "good"))
                    before = last_point.get((sim.gateway, meter))
                    if before is not None:
                        acc = truth[(sim.gateway, meter, (ts - 1) // HOUR_MS * HOUR_MS)]
                        acc[0] += value - before[1]
                        acc[1] += 1
                    last_point[(sim.gateway, meter)] = (ts, value)
                batch.append(Cycle(seq, tuple(row)))
                readings += len(row)
            token = seal(sim.signer, Envelope(sim.gateway, 1, first, batch[-1].seq, sim.head,
                                              True, tuple(batch)))
            sim.head = envelope_hash(token)
            out.append((f"{PREFIX}/{sim.gateway}/batch", token.encode()))
        per_gateway.append(out)
    interleaved = [m for group in zip(*per_gateway) for m in group]
    return Plant(sims, interleaved, readings,
                 {k: (v[0], int(v[1])) for k, v in truth.items()})


def write_registry(directory: Path, plant: Plant) -> None:
    import json

    directory.mkdir(parents=True, exist_ok=True)
    for sim in plant.gateways:
        (directory / f"{sim.gateway}.json").write_text(json.dumps(sim.record()))


# -- the publisher -------------------------------------------------------------------------------


class Publisher:
    """Publishes ``messages`` at QoS 1 from a thread, paced over ``duration_s`` (a gateway
    fleet streams; it does not dump everything at once)."""

    def __init__(self, port: int, messages: list[tuple[str, bytes]], duration_s: float) -> None:
        self._port, self._messages, self._duration = port, messages, duration_s
        self.published = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def _main(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                             protocol=mqtt.MQTTv5)
        client.max_inflight_messages_set(100)
        try:
            client.connect("127.0.0.1", self._port)
            client.loop_start()
            start, every = time.monotonic(), self._duration / max(1, len(self._messages))
            infos = []
            for i, (topic, payload) in enumerate(self._messages):
                ahead = start + i * every - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                infos.append(client.publish(topic, payload, qos=1))
                self.published = i + 1
            for info in infos:
                info.wait_for_publish(timeout=60)  # the broker has it (PUBACK received)
            client.disconnect()
            client.loop_stop()
        except BaseException as exc:  # surfaced by wait(), not lost in the thread
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float = 120.0) -> None:
        assert self.done.wait(timeout), "the publisher did not finish"
        assert self.error is None, self.error


# -- receiver processes --------------------------------------------------------------------------

# Each ingested message, as `nengtan receiver run -v` logs it (service.Subscriber.on_message).
_INGESTED = re.compile(r"^DEBUG cloud_receiver\.service: \S+/(?:batch|checkpoint) \d+: (\w+)",
                       re.MULTILINE)


@dataclass
class ReceiverProcess:
    """One member of the fleet: its own config and fixed client_id, restarted as systemd would
    (``Restart=always``: the same config, so the same client_id and the same broker session)."""

    name: str
    config: Path
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    lives: list[Path] = field(default_factory=list)  # one log per process started

    def start(self) -> None:
        log_path = self.workdir / f"{self.name}.{len(self.lives)}.log"
        self.lives.append(log_path)
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nengtan", "receiver", "run", "--config",
                 str(self.config), "-v"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)

    def log(self, life: int = -1) -> str:
        return self.lives[life].read_text(errors="replace")

    def wait_subscribed(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while "INFO cloud_receiver.service: subscribed to" not in self.log():
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"receiver {self.name} exited: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver {self.name} did not subscribe: "
                                     f"{self.log()[-2000:]}")
            time.sleep(0.05)

    def assert_alive(self) -> None:
        """Fail at once, with the log, if the process has exited (instead of a timeout)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"receiver {self.name} exited with status "
                                 f"{self.process.returncode}: {self.log()[-2000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; return the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired as exc:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"receiver {self.name} ignored SIGTERM: "
                                     f"{self.log()[-2000:]}") from exc
        return self.process.returncode

    def outcomes(self, life: int | None = None) -> Counter[str]:
        """How many messages this member ingested (in one life, or all), by outcome."""
        logs = [self.lives[life]] if life is not None else self.lives
        return Counter(m for path in logs for m in _INGESTED.findall(
            path.read_text(errors="replace")))

    def redelivered(self, life: int = -1) -> int:
        """Messages the broker sent again (DUP set) in one life: those in flight at a kill."""
        return self.log(life).count("cloud_receiver.paho: Received PUBLISH (d1,")

    def problems(self, life: int = -1) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks in one life's log."""
        return [line for line in self.log(life).splitlines()
                if line.startswith(("ERROR", "CRITICAL", "Traceback"))]


def write_config(path: Path, *, port: int, client_id: str, storage: Storage,
                 registry: Path, share_group: str | None = None, protocol: str = "5") -> Path:
    mqtt_section: dict[str, Any] = {"host": "127.0.0.1", "port": port, "protocol": protocol,
                                    "client_id": client_id, "keepalive_s": 10}
    if share_group is not None:
        mqtt_section["share_group"] = share_group
    path.write_text(tomli_w.dumps({"mqtt": mqtt_section, "storage": storage.section,
                                   "registry": {"dir": str(registry)}}))
    return path


@contextmanager
def reaped(members: list[ReceiverProcess]) -> Iterator[None]:
    """Kill whatever is still running when the test ends, pass or fail."""
    try:
        yield
    finally:
        for member in members:
            if member.process is not None and member.process.poll() is None:
                member.process.kill()
                member.process.wait()


# -- looking at the store ------------------------------------------------------------------------


def stored_envelopes(storage: Storage) -> int:
    return storage.envelopes()


def wait_until(condition: Callable[[], bool], what: str, timeout: float,
               every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def wait_drained(storage: Storage, total: int, members: list[ReceiverProcess], *,
                 timeout: float = 60.0, idle_s: float = 5.0) -> int:
    """Wait until ``total`` envelopes are stored, or the count has not moved for ``idle_s``
    (something was lost: the caller's assertions then say what, without a long timeout).
    Return the count."""
    deadline = time.monotonic() + timeout
    count, moved = -1, time.monotonic()
    while True:
        for member in members:
            member.assert_alive()
        now_count = stored_envelopes(storage)
        if now_count != count:
            count, moved = now_count, time.monotonic()
        if count >= total or time.monotonic() - moved > idle_s or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def rollup_mismatches(store: Store, plant: Plant) -> list[str]:
    """Where the stored hourly rollups differ from the ground truth or from a rebuild from the
    stored counter points (empty when all three agree)."""
    stored = {(r.gateway, r.meter, r.start_ms): (r.amount, r.intervals, r.anomalies)
              for r in store.rollups("1h", measurement=ENERGY_IMPORT)}
    rebuilt: dict[Bucket, tuple[float, int, int]] = {}
    for sim in plant.gateways:
        for meter in sim.meters:
            points = store.counter_points(sim.gateway, meter, ENERGY_IMPORT)
            for d in rebuild(points, TZ):
                if d.period == "1h":
                    rebuilt[(sim.gateway, d.meter, d.start_ms)] = (d.amount, d.intervals,
                                                                  d.anomalies)
    out: list[str] = []
    for name, other in (("ground truth", {k: (a, n, 0) for k, (a, n) in plant.truth.items()}),
                        ("rebuild", rebuilt)):
        for key in sorted(set(stored) | set(other)):
            got, want = stored.get(key), other.get(key)
            if (got is None or want is None or got[1:] != want[1:]
                    or not math.isclose(got[0], want[0], rel_tol=0, abs_tol=1e-6)):
                out.append(f"{key}: stored {got}, {name} {want}")
    return out
