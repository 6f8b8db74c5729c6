"""Receiver ingest throughput: verified and stored readings/s per process, SQLite and PostgreSQL,
in process and over MQTT with one and two receiver processes on a shared subscription.

The workload is sealed once, before anything is timed: G gateways (Ed25519 keys, enrolled in a
registry directory), each sending hash-chained wire-v2 envelopes of 50 meters × 10 measurements
× 10 one-minute cycles = 5,000 readings (two energy counters per meter, so the rollups do real
work), in publishing order with the gateways interleaved, as on a shared broker.

1. In process: ``Ingestor.ingest(topic, payload)`` over every envelope (signature, sender and
   revocation checks, chain and dedupe checks under the gateway lock, the readings, counter
   points and 15m/1h/1d rollups, one transaction per envelope) into a fresh SQLite file (WAL,
   ``synchronous=FULL`` as shipped) and into a fresh PostgreSQL schema (dropped after).
   Median of ``--runs``.
2. Over MQTT: real ``nengtan receiver run`` processes on ``$share/<group>/<prefix>/+/batch``
   storing into a fresh PostgreSQL schema. Only receiving is timed, not publishing:
   a. the receivers' persistent sessions (their fixed client ids and shared subscriptions) are
      created first, then disconnected;
   b. every envelope is published (QoS 1) while they are offline. Mosquitto 2.0 hands a shared
      subscription's messages round-robin to its members whether they are connected or not
      (a probe checks that on this broker before the runs), so each session's queue holds 1/n
      of the envelopes;
   c. the broker is paused (SIGSTOP), the receivers are started and left to import, open the
      database and connect (the kernel accepts their TCP connections; the CONNACK waits);
   d. the clock starts when the broker is resumed (SIGCONT) and stops when this script, polling
      every 20 ms, sees the last envelope committed.
   1 process, then 2, alternately, median of ``--runs``. Also: each receiver's peak RSS (VmHWM)
   and the CPU seconds the receivers, Mosquitto and PostgreSQL spent during the drain.

Usage:  .venv/bin/python bench/ingest.py [--readings 1000000] [--gateways 25] [--runs 3]
        [--envelope-cycles 10] [--pg-url URL] [--quick] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
import tomli_w  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from cloud_receiver.config import parse_config  # noqa: E402
from cloud_receiver.ingest import Ingestor, Status  # noqa: E402
from cloud_receiver.registry import Registry  # noqa: E402
from cloud_receiver.service import subscription_filters  # noqa: E402
from cloud_receiver.store import open_store  # noqa: E402
from nengtan.broker import Broker, start_broker  # noqa: E402
from nengtan.envelope import Cycle, Envelope, Reading, envelope_hash, seal  # noqa: E402
from nengtan.jws import Ed25519Signer, b64url  # noqa: E402
from nengtan.stack import _die_with_parent  # noqa: E402

TARGET_PG_RATE = 100_000  # readings/s per process into PostgreSQL
TARGET_SCALING = 1.7  # two processes vs one
PREFIX = "nengtan/v1"
SHARE_GROUP = "ingest-bench"
T0 = 1_748_707_200_000  # 2025-06-01T00:00:00+08:00: the day starts at a local midnight
CYCLE_MS = 60_000
METERS = 50
#: What a three-phase meter typically reports each minute: 10 of the vocabulary's names.
MEASUREMENTS = ("voltage_l1_n", "voltage_l2_n", "voltage_l3_n", "current_l1", "current_l2",
                "current_l3", "active_power_total", "power_factor_total",
                "active_energy_import", "reactive_energy_import")
COUNTERS = {"active_energy_import": 40, "reactive_energy_import": 15}  # max register step/min
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
POLL_S = 0.02
PROBE_APP = "nengtan-ingest-bench-probe"  # this script's own PostgreSQL connections
START_TIMEOUT_S = 60.0
# Mosquitto limits for the bench: nothing queued may be dropped, and the receivers may have
# many envelopes in flight so they never wait for the broker between two envelopes.
BROKER_CONFIG = ("max_queued_messages 0", "max_queued_bytes 0", "max_inflight_messages 1000")


class BenchError(RuntimeError):
    pass


# -- the workload --------------------------------------------------------------------------------


@dataclass
class Workload:
    gateways: int
    envelopes: int
    readings: int
    readings_per_envelope: int
    cycles_per_envelope: int
    payload_bytes: int
    seal_s: float
    messages: list[tuple[str, bytes]] = field(repr=False)

    def describe(self) -> str:
        return (f"{self.readings:,} readings in {self.envelopes:,} wire-v2 envelopes from "
                f"{self.gateways} gateways ({METERS} meters x {len(MEASUREMENTS)} measurements x "
                f"{self.cycles_per_envelope} one-minute cycles = {self.readings_per_envelope:,} "
                f"readings per envelope, {len(COUNTERS)} energy counters per meter rolled up), "
                f"Ed25519; payload {self.payload_bytes / self.readings:.2f} B/reading; sealed in "
                f"{self.seal_s:.1f} s (not timed)")


def _value(rnd: random.Random, name: str, counters: dict[tuple[str, str], int],
           meter: str) -> float:
    """Register × scale, as the agent decodes scaled integer registers."""
    if name in COUNTERS:
        register = counters[(meter, name)] = counters[(meter, name)] + rnd.randint(0, COUNTERS[name])
        return register * 0.01
    if name.startswith("voltage"):
        return rnd.randint(22_800, 23_300) * 0.01
    if name.startswith("current"):
        return rnd.randint(5_000, 60_000) * 0.001
    if name == "active_power_total":
        return rnd.randint(10_000, 600_000) * 0.1
    return rnd.randint(850, 1_000) * 0.001  # power factor


def build_workload(readings: int, gateways: int, cycles_per_envelope: int,
                   registry_dir: Path, seed: int = 1) -> Workload:
    """Seal every envelope and write each gateway's enrollment record into ``registry_dir``."""
    per_envelope = METERS * len(MEASUREMENTS) * cycles_per_envelope
    per_gateway = max(1, math.ceil(readings / per_envelope / gateways))
    meters = [f"m{m:02d}" for m in range(1, METERS + 1)]
    registry_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    streams: list[list[tuple[str, bytes]]] = []
    for g in range(1, gateways + 1):
        gateway = f"gw-bench-{g:03d}"
        rnd = random.Random(seed * 100_003 + g)
        signer = Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(rnd.randbytes(32)))
        (registry_dir / f"{gateway}.json").write_text(json.dumps({
            "gateway": gateway, "alg": signer.alg, "kid": signer.kid,
            "public_key": b64url(signer.public_bytes), "enrolled_at": "2025-05-30T09:00:00+08:00"}))
        counters = {(m, name): rnd.randint(100_000, 9_000_000) for m in meters for name in COUNTERS}
        topic, head, seq, stream = f"{PREFIX}/{gateway}/batch", None, 1, []
        for _ in range(per_gateway):
            cycles = []
            for _ in range(cycles_per_envelope):
                start = T0 + (seq - 1) * CYCLE_MS + rnd.randint(0, 3)
                rows = []
                for i, meter in enumerate(meters):  # one Modbus block per meter along the bus
                    ts = start + 40 + 60 * i + rnd.randint(0, 20)
                    rows += [Reading(meter, name, ts, _value(rnd, name, counters, meter), "good")
                             for name in MEASUREMENTS]
                cycles.append(Cycle(seq, tuple(rows)))
                seq += 1
            token = seal(signer, Envelope(gateway, 1, cycles[0].seq, cycles[-1].seq, head, True,
                                          tuple(cycles)), version=2)
            head = envelope_hash(token)
            stream.append((topic, token.encode("ascii")))
        streams.append(stream)
    messages = [s[k] for k in range(per_gateway) for s in streams]  # gateways interleaved
    return Workload(gateways, len(messages), len(messages) * per_envelope, per_envelope,
                    cycles_per_envelope, sum(len(p) for _, p in messages),
                    time.perf_counter() - started, messages)


# -- storage targets -----------------------------------------------------------------------------


@dataclass
class Target:
    """A fresh, empty place to store into: a SQLite file or a PostgreSQL schema."""

    backend: str  # "sqlite" | "postgresql"
    location: str  # what open_store takes
    section: dict[str, str]  # the receiver config's [storage]
    schema: str | None = None

    @contextmanager
    def envelope_counter(self) -> Iterator[Callable[[], int]]:
        """A cheap way to poll how many envelopes are committed: one connection kept open."""
        if self.backend == "sqlite":
            with closing(sqlite3.connect(f"file:{self.location}?mode=ro", uri=True,
                                         timeout=10)) as conn:
                yield lambda: int(conn.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0])
            return
        with psycopg.connect(self.location, autocommit=True, application_name=PROBE_APP) as pg:
            def count() -> int:
                row = pg.execute("SELECT COUNT(*) FROM envelopes").fetchone()
                return int(row[0]) if row else 0
            yield count

    def stored_bytes(self) -> dict[str, int]:
        """Bytes per table, indexes and TOAST included (PostgreSQL) or the file (SQLite)."""
        if self.backend == "sqlite":
            return {"file": Path(self.location).stat().st_size}
        with psycopg.connect(self.location, autocommit=True, application_name=PROBE_APP) as conn:
            rows = conn.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 2 DESC",
                (self.schema,)).fetchall()
        return {str(name): int(size) for name, size in rows}


    def backend_cpu_seconds(self) -> float:
        """CPU seconds of the PostgreSQL backends serving the stores opened on this target
        (found by the URL's application_name); 0 for SQLite. Background processes (WAL
        writer, checkpointer) are not counted: with synchronous_commit=on each backend
        flushes its own commits."""
        if self.schema is None:
            return 0.0
        with psycopg.connect(self.location, autocommit=True, application_name=PROBE_APP) as conn:
            pids = [int(row[0]) for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (self.schema,)).fetchall()]
        return sum(cpu_seconds(pid) for pid in pids)


def _schema_url(url: str, schema: str) -> str:
    """``url`` using ``schema`` (search_path), its connections named after it, so that this
    script can find their backends and read their CPU time."""
    extra = f"options={quote(f'-c search_path={schema}')}&application_name={schema}"
    return f"{url}{'&' if '?' in url else '?'}{extra}"


@contextmanager
def fresh_target(backend: str, workdir: Path, pg_url: str) -> Iterator[Target]:
    if backend == "sqlite":
        path = workdir / f"receiver-{uuid.uuid4().hex[:8]}.db"
        try:
            yield Target("sqlite", str(path), {"path": str(path)})
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = f"ingest_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = _schema_url(pg_url, schema)
    try:
        yield Target("postgresql", url, {"url": url}, schema)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def prepare(target: Target, registry_dir: Path) -> None:
    """Create the tables and enroll the keys before anything is timed."""
    store = open_store(target.location)
    try:
        loaded = Registry(store, registry_dir).reload()
        if loaded.errors:
            raise BenchError(f"enrollment failed: {loaded.errors}")
    finally:
        store.close()


# -- in process ----------------------------------------------------------------------------------


@dataclass
class InProcess:
    backend: str
    readings_per_s: list[float]  # one per run
    seconds: list[float]
    stored_bytes_per_reading: float
    stored_bytes: dict[str, int]
    cpu_s: list[float] = field(default_factory=list)  # this process, per run
    postgres_cpu_s: list[float] = field(default_factory=list)  # the store's backend, per run

    @property
    def median(self) -> float:
        return statistics.median(self.readings_per_s)


def ingest_in_process(target: Target, workload: Workload,
                      registry_dir: Path) -> tuple[float, float, float]:
    """Wall seconds, this process's CPU seconds and PostgreSQL's CPU seconds of the loop."""
    prepare(target, registry_dir)
    store = open_store(target.location)
    try:
        registry = Registry(store, registry_dir)
        registry.reload()
        ingestor = Ingestor(store, registry, topic_prefix=PREFIX)
        stored = 0
        pg0, cpu0 = target.backend_cpu_seconds(), time.process_time()
        started = time.perf_counter()
        for topic, payload in workload.messages:
            outcome = ingestor.ingest(topic, payload)
            if outcome.status is not Status.ACCEPTED:
                raise BenchError(f"{topic}: {outcome}")
            stored += outcome.readings
        elapsed = time.perf_counter() - started
        cpu, pg = time.process_time() - cpu0, target.backend_cpu_seconds() - pg0
        if stored != workload.readings or store.stats()["readings"] != workload.readings:
            raise BenchError(f"stored {stored:,} readings of {workload.readings:,}")
    finally:
        store.close()
    return elapsed, cpu, pg


# -- over MQTT -----------------------------------------------------------------------------------


@dataclass
class MqttRun:
    processes: int
    seconds: float
    readings_per_s: float
    peak_rss_mb: list[float]
    receivers_cpu_s: list[float]
    broker_cpu_s: float
    postgres_cpu_s: float
    machine_busy_cpu_s: float
    publish_s: float


@dataclass
class OverMqtt:
    processes: int
    runs: list[MqttRun]

    @property
    def median(self) -> float:
        return statistics.median(r.readings_per_s for r in self.runs)

    def median_run(self) -> MqttRun:
        return sorted(self.runs, key=lambda r: r.readings_per_s)[(len(self.runs) - 1) // 2]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and iowait, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM for pid {pid}")


def connected_to(pid: int, port: int) -> bool:
    """Whether ``pid`` holds an established TCP connection to 127.0.0.1:``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[3] == "01" and int(cols[2].split(":")[1], 16) == port and cols[9] in inodes:
            return True
    return False


def wait(what: str, predicate: Callable[[], bool], timeout: float,
         logs: Sequence[Path] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {p}:\n{p.read_text(errors='replace')[-2000:]}"
                            for p in logs if p.exists())
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}{tails}")
        time.sleep(POLL_S)


def _mqtt_client(client_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def create_session(broker: Broker, client_id: str, filters: list[str]) -> None:
    """What the daemon's first connection leaves behind: a persistent session under its client
    id with its shared subscriptions (the daemon subscribes again on connect: a no-op)."""
    client = _mqtt_client(client_id)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    subscribed: list[bool] = []
    client.on_subscribe = lambda c, u, mid, codes, p: subscribed.append(
        all(not rc.is_failure for rc in codes))
    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    client.loop_start()
    try:
        client.subscribe([(f, 1) for f in filters])
        wait(f"the subscription of {client_id}", lambda: bool(subscribed), 10)
        if not subscribed[0]:
            raise BenchError(f"the broker refused {filters}")
    finally:
        client.disconnect()
        client.loop_stop()


def check_offline_round_robin(workdir: Path) -> None:
    """The method relies on how Mosquitto treats a shared subscription whose members are offline
    with persistent sessions: it queues each message to the next member's session in turn.
    Check that on this broker before relying on it (10 messages, 2 offline members)."""
    broker = start_broker(workdir / "probe-broker", prefer="mosquitto", extra_config=BROKER_CONFIG)
    try:
        members = [f"probe-{i}" for i in (1, 2)]
        for member in members:
            create_session(broker, member, ["$share/probe/probe/+"])
        publish_all(broker, [(f"probe/{i}", str(i).encode()) for i in range(10)])
        shares = []
        for member in members:
            got: list[bytes] = []
            client = _mqtt_client(member)

            def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage,
                           got: list[bytes] = got) -> None:
                got.append(bytes(m.payload))

            client.on_message = on_message
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            client.connect(broker.host, broker.port, clean_start=False, properties=props)
            client.loop_start()
            try:
                wait(f"{member}'s queued messages", lambda: len(got) >= 5, 10)  # noqa: B023
                time.sleep(0.2)  # anything beyond its share would arrive now
            finally:
                client.disconnect()
                client.loop_stop()
            shares.append(sorted(int(x) for x in got))
    finally:
        broker.stop()
    if shares != [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]:
        raise BenchError("this Mosquitto does not queue a shared subscription's messages "
                         f"round-robin to offline members (got {shares}); the MQTT figures "
                         "would not measure what they claim")


def publish_all(broker: Broker, messages: list[tuple[str, bytes]]) -> float:
    client = _mqtt_client(f"bench-publisher-{os.getpid()}")
    client.max_inflight_messages_set(200)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        started = time.perf_counter()
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=60)
            if not info.is_published():
                raise BenchError("the broker did not acknowledge a publish within 60 s")
        return time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()


def receiver_config(path: Path, broker: Broker, client_id: str, target: Target,
                    registry_dir: Path) -> list[str]:
    """Write a receiver config; return the topic filters its daemon subscribes to."""
    data = {"mqtt": {"host": broker.host, "port": broker.port, "protocol": "5",
                     "topic_prefix": PREFIX, "client_id": client_id, "share_group": SHARE_GROUP},
            "storage": target.section, "registry": {"dir": str(registry_dir)}}
    path.write_text(tomli_w.dumps(data))
    return subscription_filters(parse_config(data, str(path), path.parent).mqtt)


def spawn_receiver(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "nengtan", "receiver", "run", "--config",
                                 str(config)], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                preexec_fn=_die_with_parent, cwd=ROOT)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drain_over_mqtt(processes: int, workload: Workload, registry_dir: Path, workdir: Path,
                    pg_url: str, backend: str, note: Callable[[str], None]) -> MqttRun:
    run_dir = workdir / f"mqtt-{processes}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir()
    broker = start_broker(run_dir / "broker", prefer="mosquitto", extra_config=BROKER_CONFIG)
    receivers: list[subprocess.Popen[bytes]] = []
    paused = False
    try:
        with fresh_target(backend, run_dir, pg_url) as target:
            prepare(target, registry_dir)
            configs, logs = [], []
            for i in range(1, processes + 1):
                config = run_dir / f"receiver-{i}.toml"
                filters = receiver_config(config, broker, f"bench-rx-{i}", target, registry_dir)
                create_session(broker, f"bench-rx-{i}", filters)
                configs.append(config)
                logs.append(run_dir / f"receiver-{i}.log")
            publish_s = publish_all(broker, workload.messages)
            os.kill(broker.process.pid, signal.SIGSTOP)
            paused = True
            receivers = [spawn_receiver(c, log) for c, log in zip(configs, logs)]
            wait(f"{processes} receiver(s) to connect to the paused broker",
                 lambda: all(p.poll() is None and connected_to(p.pid, broker.port)
                             for p in receivers) or any(p.poll() is not None for p in receivers),
                 START_TIMEOUT_S, logs)
            if any(p.poll() is not None for p in receivers):
                raise BenchError("a receiver exited at start:" + "".join(
                    f"\n--- {log}:\n{log.read_text(errors='replace')[-2000:]}" for log in logs))
            cpu0 = [cpu_seconds(p.pid) for p in receivers]
            broker0, pg0, busy0 = (cpu_seconds(broker.process.pid), target.backend_cpu_seconds(),
                                   machine_busy_seconds())
            os.kill(broker.process.pid, signal.SIGCONT)
            paused = False
            started = time.perf_counter()
            deadline = started + max(120.0, workload.readings / 10_000)
            with target.envelope_counter() as committed:
                while committed() < workload.envelopes:
                    if (time.perf_counter() > deadline
                            or any(p.poll() is not None for p in receivers)):
                        raise BenchError(f"the drain did not finish; see {run_dir}")
                    time.sleep(POLL_S)
            elapsed = time.perf_counter() - started
            rss = [vm_hwm_mb(p.pid) for p in receivers]
            cpu = [cpu_seconds(p.pid) - c for p, c in zip(receivers, cpu0)]
            broker_cpu = cpu_seconds(broker.process.pid) - broker0
            pg_cpu, busy = target.backend_cpu_seconds() - pg0, machine_busy_seconds() - busy0
            for p in receivers:
                stop_process(p)
            check_stored(target, workload)
    finally:
        if paused:
            os.kill(broker.process.pid, signal.SIGCONT)
        for p in receivers:
            stop_process(p)
        broker.stop()
    run = MqttRun(processes, elapsed, workload.readings / elapsed, rss, cpu, broker_cpu, pg_cpu,
                  busy, publish_s)
    note(f"  {processes} process(es): {run.readings_per_s:,.0f} readings/s "
         f"({elapsed:.2f} s; published in {publish_s:.2f} s beforehand)")
    return run


def check_stored(target: Target, workload: Workload) -> None:
    """Every envelope stored once, nothing quarantined, no duplicate delivered."""
    store = open_store(target.location, create=False)
    try:
        stats, counters = store.stats(), store.counters()
        quarantined = sum(store.quarantine_counts().values())
    finally:
        store.close()
    if stats["readings"] != workload.readings or quarantined or counters.get("duplicate"):
        raise BenchError(f"stored {stats['readings']:,} readings of {workload.readings:,}; "
                         f"{quarantined} quarantined, {counters.get('duplicate', 0)} duplicates")


# -- the report ----------------------------------------------------------------------------------


@dataclass
class Result:
    machine: dict[str, str | int | float]
    description: str
    workload: dict[str, int | float]
    in_process: list[InProcess]
    over_mqtt: list[OverMqtt]
    mqtt_backend: str

    def verdicts(self) -> list[tuple[str, str, bool]]:
        out = []
        pg = [r for r in self.in_process if r.backend == "postgresql"]
        if pg:
            out.append((f"in process into PostgreSQL >= {TARGET_PG_RATE:,} readings/s",
                        f"{pg[0].median:,.0f}", pg[0].median >= TARGET_PG_RATE))
        by_n = {m.processes: m for m in self.over_mqtt}
        if 1 in by_n and self.mqtt_backend == "postgresql":
            one = by_n[1].median
            out.append((f"one receiver process over MQTT into PostgreSQL >= {TARGET_PG_RATE:,} "
                        "readings/s", f"{one:,.0f}", one >= TARGET_PG_RATE))
        if 1 in by_n and 2 in by_n:
            ratio = by_n[2].median / by_n[1].median
            out.append((f"two processes >= {TARGET_SCALING} x one", f"{ratio:.2f} x",
                        ratio >= TARGET_SCALING))
        return out


def machine_info(pg_url: str) -> dict[str, str | int | float]:
    info: dict[str, str | int | float] = {
        "cpus": os.cpu_count() or 0, "arch": platform.machine(),
        "python": platform.python_version(), "load_1min": round(os.getloadavg()[0], 2)}
    try:
        info["mosquitto"] = subprocess.run(
            [shutil.which("mosquitto") or "mosquitto", "-h"], capture_output=True, text=True,
            timeout=5).stdout.split("\n", 1)[0].replace("mosquitto version ", "")
    except OSError:
        pass
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('server_version'), "
                               "current_setting('synchronous_commit'), "
                               "current_setting('shared_buffers')").fetchone()
            if row:
                info["postgresql"] = f"{row[0]} (synchronous_commit={row[1]}, " \
                                     f"shared_buffers={row[2]})"
    except psycopg.Error:
        pass
    return info


def report(r: Result) -> str:
    cpus = int(r.machine["cpus"])
    lines = [
        f"machine: {cpus} CPUs ({r.machine['arch']}), Python {r.machine['python']}, "
        f"PostgreSQL {r.machine.get('postgresql', '-')}, Mosquitto {r.machine.get('mosquitto', '-')}; "
        f"load average (1 min) at start {r.machine['load_1min']}, at end "
        f"{r.machine.get('load_1min_end', '-')} (other work on the machine slows every figure)",
        f"workload: {r.description}",
    ]
    if r.in_process:
        runs = len(r.in_process[0].readings_per_s)
        lines += ["", f"in process: Ingestor.ingest per envelope (verify + chain + dedupe + store + "
                      f"rollups, 1 transaction each), median of {runs} run(s)",
                  f"{'backend':<11} {'readings/s':>11} {'envelopes/s':>11} {'stored B/reading':>16}"
                  f"  CPU s/M readings: Python + PostgreSQL   runs (readings/s)"]
        per_env = r.workload["readings_per_envelope"]
        for ip in r.in_process:
            million = r.workload["readings"] / 1e6
            cpu = f"{statistics.median(ip.cpu_s) / million:.1f} + " \
                  f"{statistics.median(ip.postgres_cpu_s) / million:.1f}"
            lines.append(f"{ip.backend:<11} {ip.median:>11,.0f} {ip.median / per_env:>11.1f} "
                         f"{ip.stored_bytes_per_reading:>16.1f}  {cpu:>37}   "
                         + " / ".join(f"{x:,.0f}" for x in ip.readings_per_s))
            if ip.backend == "postgresql":
                top = sorted(ip.stored_bytes.items(), key=lambda kv: -kv[1])[:5]
                lines.append("            PostgreSQL bytes per reading by table (incl. indexes, "
                             "TOAST): " + ", ".join(
                                 f"{k} {v / r.workload['readings']:.1f}" for k, v in top))
    if r.over_mqtt:
        runs = len(r.over_mqtt[0].runs)
        lines += ["", f"over MQTT: real `nengtan receiver run` processes on $share/{SHARE_GROUP}/"
                      f"{PREFIX}/+/batch, {r.mqtt_backend} storage, median of {runs} run(s)",
                  "  method: sessions created, everything published (QoS 1) while the receivers "
                  "are offline (Mosquitto queues a shared subscription's messages round-robin to "
                  "its members' sessions), broker paused, receivers started and connected, clock "
                  "from broker resumed to last envelope committed",
                  f"{'processes':>9} {'readings/s':>11} {'per process':>11} {'envelopes/s':>11} "
                  f"{'peak RSS MB':>12}  CPU s in the drain: receivers / broker / postgres / "
                  f"machine (of {cpus} x drain s)"]
        per_env = r.workload["readings_per_envelope"]
        for m in r.over_mqtt:
            mr = m.median_run()
            lines.append(
                f"{m.processes:>9} {m.median:>11,.0f} {m.median / m.processes:>11,.0f} "
                f"{m.median / per_env:>11.1f} {'/'.join(f'{x:.0f}' for x in mr.peak_rss_mb):>12}  "
                f"{'+'.join(f'{x:.1f}' for x in mr.receivers_cpu_s)} / {mr.broker_cpu_s:.1f} / "
                f"{mr.postgres_cpu_s:.1f} / {mr.machine_busy_cpu_s:.1f} (of "
                f"{cpus * mr.seconds:.1f})   runs: "
                + " / ".join(f"{x.readings_per_s:,.0f}" for x in m.runs))
        million = r.workload["readings"] / 1e6
        lines.append("CPU seconds per million readings (median run): " + "; ".join(
            f"{m.processes} process(es): receivers {sum(m.median_run().receivers_cpu_s) / million:.1f}"
            f", Mosquitto {m.median_run().broker_cpu_s / million:.2f}, PostgreSQL "
            f"{m.median_run().postgres_cpu_s / million:.1f}" for m in r.over_mqtt)
            + " (PostgreSQL: the receivers' backends)")
        by_n = {m.processes: m.median for m in r.over_mqtt}
        if 1 in by_n and 2 in by_n:
            lines.append(f"2 processes / 1 = {by_n[2] / by_n[1]:.2f} x  ({cpus} CPUs shared by the "
                         f"receivers, PostgreSQL and Mosquitto)")
    lines.append("")
    for name, value, ok in r.verdicts():
        lines.append(f"{'MET   ' if ok else 'MISSED'} {name}: {value}")
    return "\n".join(lines)


def preflight(pg_url: str, needs_pg: bool, needs_broker: bool) -> str | None:
    """What is missing for the requested runs, said before anything is sealed."""
    if needs_broker and not shutil.which("mosquitto"):
        return ("Mosquitto is not installed (Debian package: mosquitto); run with "
                "--processes '' to skip the MQTT part")
    if needs_pg:
        try:
            psycopg.connect(pg_url, connect_timeout=5).close()
        except psycopg.Error as exc:
            return (f"cannot reach PostgreSQL at {pg_url} ({str(exc).strip()}); give --pg-url, "
                    "or run with --backends sqlite --mqtt-backend sqlite")
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=1_000_000, help="at least this many in all")
    p.add_argument("--gateways", type=int, default=25,
                   help="odd, so that round-robin hands each gateway's envelopes to both "
                        "receivers in turn")
    p.add_argument("--envelope-cycles", type=int, default=10,
                   help="one-minute cycles per envelope (10: 5,000 readings; 1: what a live "
                        "gateway of 50 meters sends each minute)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--backends", default="sqlite,postgresql",
                   help="in-process backends, comma-separated (empty: none)")
    p.add_argument("--processes", default="1,2",
                   help="receiver process counts over MQTT, comma-separated (empty: none)")
    p.add_argument("--mqtt-backend", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--pg-url", default=os.environ.get("NENGTAN_PG_URL", DEFAULT_PG_URL))
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 100,000 readings, 5 gateways, 1 run (about 20 s)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = p.parse_args(argv)
    if args.quick:
        args.readings, args.gateways, args.runs = 100_000, 5, 1
    backends = [b for b in args.backends.split(",") if b]
    counts = [int(n) for n in args.processes.split(",") if n]

    def note(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    os.environ["PATH"] += os.pathsep + "/usr/sbin"  # Debian installs mosquitto there
    problem = preflight(args.pg_url, "postgresql" in backends
                        or (bool(counts) and args.mqtt_backend == "postgresql"), bool(counts))
    if problem:
        print(f"bench/ingest.py: {problem}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="nengtan-ingest-"))
    try:
        machine = machine_info(args.pg_url)
        registry_dir = workdir / "gateways"
        note(f"sealing {args.readings:,} readings ...")
        workload = build_workload(args.readings, args.gateways, args.envelope_cycles, registry_dir)
        note(workload.describe())
        in_process = {b: InProcess(b, [], [], 0.0, {}) for b in backends}
        for run in range(args.runs):
            for backend in backends:
                with fresh_target(backend, workdir, args.pg_url) as target:
                    seconds, cpu, pg_cpu = ingest_in_process(target, workload, registry_dir)
                    ip = in_process[backend]
                    ip.seconds.append(seconds)
                    ip.cpu_s.append(cpu)
                    ip.postgres_cpu_s.append(pg_cpu)
                    ip.readings_per_s.append(workload.readings / seconds)
                    ip.stored_bytes = target.stored_bytes()
                    ip.stored_bytes_per_reading = sum(ip.stored_bytes.values()) / workload.readings
                note(f"  in process, {backend}, run {run + 1}: "
                     f"{workload.readings / seconds:,.0f} readings/s")
        over = {n: OverMqtt(n, []) for n in counts}
        if counts:
            check_offline_round_robin(workdir)
        for _ in range(args.runs):
            for n in counts:
                over[n].runs.append(drain_over_mqtt(n, workload, registry_dir, workdir,
                                                    args.pg_url, args.mqtt_backend, note))
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    machine["load_1min_end"] = round(os.getloadavg()[0], 2)
    result = Result(machine, workload.describe(),
                    {"readings": workload.readings, "envelopes": workload.envelopes,
                              "gateways": workload.gateways,
                              "readings_per_envelope": workload.readings_per_envelope,
                              "payload_bytes_per_reading": round(
                                  workload.payload_bytes / workload.readings, 3)},
                    list(in_process.values()), list(over.values()), args.mqtt_backend)
    if args.json:
        data = asdict(result)
        for ip, in_proc in zip(data["in_process"], result.in_process):
            ip["median_readings_per_s"] = in_proc.median
        for om, mq in zip(data["over_mqtt"], result.over_mqtt):
            om["median_readings_per_s"] = mq.median
        print(json.dumps({**data, "verdicts": [
            {"target": n, "value": v, "met": ok} for n, v, ok in result.verdicts()]}, indent=2))
    else:
        print(report(result))
    return 0 if all(ok for _, _, ok in result.verdicts()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
