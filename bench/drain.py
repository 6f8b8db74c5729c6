"""How fast a gateway's backlog drains end to end: real agent → real Mosquitto → real receiver.

A backlog of N readings (10 three-phase meters × 25 measurements per 10 s cycle, timestamps in
the past, see hw_tests/backlog.py) is committed into a real agent buffer with
``SqliteBuffer.add`` (one transaction per cycle, the gateway's own key as sealer, exactly as
agent.runner.build_agent wires it). Then the real daemons run: ``nengtan receiver run`` (subscribed
before the agent starts) and ``nengtan agent run``, whose only bus is an emulated RS-485 line
polled once a day, so nothing but the drain happens. Every figure is taken from the daemons'
own databases, their /proc entries and the kernel's TCP counters:

- readings/s: readings ÷ (first envelope sealed by the agent, ``envelopes.sealed_ms`` of its
  buffer — the first publish follows it in the same loop step — → the moment this script saw
  the last envelope committed at the receiver, polling every 50 ms). Also shown: from the
  first ``received_ms`` at the receiver to the last.
- bytes per reading on the gateway's uplink: the sum of the envelopes' MQTT payloads (the
  stored JWS tokens), plus per message the MQTT 5 PUBLISH header (fixed header, topic, packet
  id, empty properties), plus TCP/IPv4 headers (52 bytes with timestamps) per 1448-byte segment
  (Ethernet MTU). Ethernet framing and what flows back (PUBACKs, TCP ACKs) are not included;
  the kernel's count of TCP payload bytes the agent's socket sent (``ss``) is shown as a check.
- peak RSS: VmHWM of the agent and receiver processes, read at the end of the drain.

Usage:  .venv/bin/python bench/drain.py [--readings 1000000] [--json]
        [--values decimal|float32] [--envelope-readings 5000] [--inflight 20] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tomli_w  # noqa: E402

from agent.runner import BUFFER_FILE  # noqa: E402
from hw_tests.backlog import (  # noqa: E402
    CYCLE_S,
    SyntheticMeters,
    agent_envelopes,
    prefill,
    receiver_cycle_count,
    vm_hwm_kib,
)
from nengtan.stack import GATEWAY_ID, Stack  # noqa: E402

TARGET_RATE = 50_000  # readings per second, end to end
TARGET_BYTES = 16.0  # bytes on the wire per reading
TARGET_AGENT_RSS_MB = 60.0
METERS = 10
TCP_IP_HEADERS = 52  # IPv4 20 + TCP 20 + timestamps option 12
MSS = 1448  # Ethernet MTU 1500 minus those headers
POLL_S = 0.05
IDLE_METER = ("idle-meter", "chint-dtsu666", 1)  # the agent's only bus: polled once a day


@dataclass
class Result:
    readings: int
    cycles: int
    envelopes: int
    values: str
    envelope_readings: int
    inflight: int
    prefill_s: float
    agent_start_to_done_s: float
    drain_s: float  # first envelope sealed -> last envelope seen committed at the receiver
    readings_per_s: float
    receive_span_s: float  # first received_ms -> last received_ms at the receiver
    payload_bytes: int
    mqtt_header_bytes: int
    tcp_ip_header_bytes: int
    bytes_per_reading: float  # payload + MQTT + TCP/IP headers
    payload_bytes_per_reading: float
    tcp_bytes_sent_by_agent: int | None  # kernel count (ss), TCP payload incl. side messages
    agent_rss_mb: float
    receiver_rss_mb: float
    agent_cpu_s: float
    receiver_cpu_s: float
    broker_cpu_s: float
    receiver_readings: int
    receiver_duplicates: int  # envelopes that arrived again (resent), acknowledged, not stored

    def verdicts(self) -> list[tuple[str, str, bool]]:
        return [
            (f"readings/s end to end >= {TARGET_RATE:,}", f"{self.readings_per_s:,.0f}",
             self.readings_per_s >= TARGET_RATE),
            (f"bytes on the wire per reading <= {TARGET_BYTES:g}", f"{self.bytes_per_reading:.2f}",
             self.bytes_per_reading <= TARGET_BYTES),
            (f"agent peak RSS <= {TARGET_AGENT_RSS_MB:g} MB", f"{self.agent_rss_mb:.1f} MB",
             self.agent_rss_mb <= TARGET_AGENT_RSS_MB),
        ]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_bytes_sent(pid: int, broker_port: int) -> int | None:
    """TCP payload bytes the process's connection to the broker has sent (kernel's tcp_info)."""
    try:
        out = subprocess.run(["ss", "-tinpH", "state", "established", f"dport = :{broker_port}"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.splitlines()
    for head, info in zip(lines[::2], lines[1::2]):
        if f"pid={pid}," in head:
            found = re.search(r"bytes_sent:(\d+)", info)
            return int(found.group(1)) if found else None
    return None


def mqtt_publish_header(topic: str, payload: int) -> int:
    """Bytes of an MQTT 5 QoS 1 PUBLISH besides its payload (no properties)."""
    rest = 2 + len(topic.encode()) + 2 + 1 + payload
    length_bytes = 1 if rest < 128 else 2 if rest < 16_384 else 3 if rest < 2_097_152 else 4
    return 1 + length_bytes + (rest - payload)


def wait_subscribed(stack: Stack, timeout: float = 30) -> None:
    log = stack.workdir / "receiver.log"
    stack.wait_for("the receiver's subscription", lambda: log.exists()
                   and "subscribed to" in log.read_text(errors="replace"), timeout=timeout,
                   every=0.05)


def configure(stack: Stack, envelope_readings: int | None, inflight: int | None) -> None:
    """Change the provisioned agent config's uplink settings, if asked."""
    data = tomllib.loads(stack.agent_config.read_text())
    mqtt = data["outputs"]["mqtt"]
    if envelope_readings is not None:
        mqtt["max_readings_per_envelope"] = envelope_readings
    if inflight is not None:
        mqtt["inflight"] = inflight
    stack.agent_config.write_text(tomli_w.dumps(data))


def run(readings: int, values: str, envelope_readings: int | None, inflight: int | None,
        workdir: Path, say: bool) -> Result:
    def note(text: str) -> None:
        if say:
            print(text, file=sys.stderr, flush=True)

    os.environ["PATH"] += os.pathsep + "/usr/sbin"  # Debian installs mosquitto there
    stack = Stack(workdir, meters=[IDLE_METER], interval_s=86400.0, broker_kind="auto")
    meters = SyntheticMeters([f"bench-m{i:02d}" for i in range(METERS)], values=values)
    cycles = max(1, math.ceil(readings / meters.per_cycle))
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        stack.start_emulator()
        stack.start_broker()
        stack.provision()
        configure(stack, envelope_readings, inflight)
        config = tomllib.loads(stack.agent_config.read_text())["outputs"]["mqtt"]
        end_ms = int(time.time() * 1000) - 3600_000  # the backlog ends an hour ago
        note(f"prefilling {cycles:,} cycles of {meters.per_cycle} readings ...")
        filled = prefill(stack.agent_config, meters, cycles=cycles, end_ms=end_ms,
                         interval_s=CYCLE_S,
                         progress=lambda n: note(f"  {n:,} cycles") if n % 2000 == 0 else None)
        note(f"prefilled {filled.readings:,} readings in {filled.seconds:.1f} s")
        stack.start_receiver()
        wait_subscribed(stack)
        assert stack.broker is not None
        cpu_before = {"broker": cpu_seconds(stack.broker.process.pid),
                      "receiver": cpu_seconds(stack.processes["receiver"].pid)}
        started = time.time()
        agent = stack.start_agent()
        note("agent started; draining ...")
        deadline = time.monotonic() + 900
        while receiver_cycle_count(stack.receiver_db, GATEWAY_ID) < filled.cycles:
            if time.monotonic() > deadline or agent.poll() is not None:
                raise RuntimeError(f"drain did not finish; see {workdir}/agent.log and "
                                   f"{workdir}/receiver.log")
            time.sleep(POLL_S)
        done = time.time()
        # Read everything about the live processes before they stop.
        agent_rss = vm_hwm_kib(agent.pid) / 1024
        receiver_pid = stack.processes["receiver"].pid
        receiver_rss = vm_hwm_kib(receiver_pid) / 1024
        agent_cpu = cpu_seconds(agent.pid)
        receiver_cpu = cpu_seconds(receiver_pid) - cpu_before["receiver"]
        broker_cpu = cpu_seconds(stack.broker.process.pid) - cpu_before["broker"]
        sent = tcp_bytes_sent(agent.pid, stack.broker.port)
        stack.stop("agent")
        stack.stop("receiver")
    finally:
        stack.close()

    envelopes = agent_envelopes(stack.workdir / "gateway" / "state" / BUFFER_FILE)
    with _ro(stack.receiver_db) as conn:
        first_rx, last_rx = conn.execute("SELECT MIN(received_ms), MAX(received_ms) FROM "
                                         "envelopes WHERE gateway = ?", (GATEWAY_ID,)).fetchone()
        stored = int(conn.execute("SELECT COUNT(*) FROM readings WHERE gateway = ?",
                                  (GATEWAY_ID,)).fetchone()[0])
        row = conn.execute("SELECT value FROM counters WHERE name = 'duplicate'").fetchone()
        duplicates = int(row[0]) if row else 0
    topic = f"{config.get('topic_prefix', 'nengtan/v1')}/{GATEWAY_ID}/batch"
    payload = sum(e.token_bytes for e in envelopes)
    mqtt = sum(mqtt_publish_header(topic, e.token_bytes) for e in envelopes)
    tcp = math.ceil((payload + mqtt) / MSS) * TCP_IP_HEADERS
    first_seal = min(e.sealed_ms for e in envelopes) / 1000
    drain = done - first_seal
    return Result(
        readings=filled.readings, cycles=filled.cycles, envelopes=len(envelopes), values=values,
        envelope_readings=int(config.get("max_readings_per_envelope", 5000)),
        inflight=int(config.get("inflight", 20)), prefill_s=round(filled.seconds, 2),
        agent_start_to_done_s=round(done - started, 3), drain_s=round(drain, 3),
        readings_per_s=round(filled.readings / drain, 1),
        receive_span_s=round((last_rx - first_rx) / 1000, 3),
        payload_bytes=payload, mqtt_header_bytes=mqtt, tcp_ip_header_bytes=tcp,
        bytes_per_reading=round((payload + mqtt + tcp) / filled.readings, 3),
        payload_bytes_per_reading=round(payload / filled.readings, 3),
        tcp_bytes_sent_by_agent=sent, agent_rss_mb=round(agent_rss, 1),
        receiver_rss_mb=round(receiver_rss, 1), agent_cpu_s=round(agent_cpu, 2),
        receiver_cpu_s=round(receiver_cpu, 2), broker_cpu_s=round(broker_cpu, 2),
        receiver_readings=stored, receiver_duplicates=duplicates,
    )


def _ro(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10))


def report(r: Result) -> str:
    lines = [
        f"backlog: {r.readings:,} readings in {r.cycles:,} cycles ({METERS} meters x 25 "
        f"measurements, {CYCLE_S:g} s apart, values {r.values}); prefilled in {r.prefill_s:.1f} s",
        f"drained in {r.envelopes} envelopes (max {r.envelope_readings} readings each, "
        f"inflight {r.inflight}); receiver stored {r.receiver_readings:,} readings, "
        f"{r.receiver_duplicates} duplicate envelope(s)",
        f"first envelope sealed -> last committed: {r.drain_s:.2f} s  "
        f"=> {r.readings_per_s:,.0f} readings/s",
        f"first -> last received_ms at the receiver: {r.receive_span_s:.2f} s; agent start -> "
        f"done: {r.agent_start_to_done_s:.2f} s",
        f"wire: payload {r.payload_bytes_per_reading:.2f} B/reading; + MQTT headers "
        f"{r.mqtt_header_bytes:,} B + TCP/IP headers {r.tcp_ip_header_bytes:,} B "
        f"=> {r.bytes_per_reading:.2f} B/reading"
        + (f" (kernel: agent socket sent {r.tcp_bytes_sent_by_agent:,} B TCP payload = "
           f"{r.tcp_bytes_sent_by_agent / r.readings:.2f} B/reading)"
           if r.tcp_bytes_sent_by_agent else ""),
        f"peak RSS: agent {r.agent_rss_mb:.1f} MB, receiver {r.receiver_rss_mb:.1f} MB",
        f"CPU during the drain: agent {r.agent_cpu_s:.1f} s (incl. start-up), receiver "
        f"{r.receiver_cpu_s:.1f} s, broker {r.broker_cpu_s:.1f} s",
    ]
    for name, value, ok in r.verdicts():
        lines.append(f"{'MET   ' if ok else 'MISSED'} {name}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readings", type=int, default=1_000_000)
    p.add_argument("--values", choices=("decimal", "float32"), default="decimal",
                   help="decimal: 230.12 V as scaled integer registers read; float32: what a "
                        "float32 register decodes to (230.1199951171875)")
    p.add_argument("--envelope-readings", type=int, default=None,
                   help="agent max_readings_per_envelope (default: the agent's default)")
    p.add_argument("--inflight", type=int, default=None,
                   help="agent uplink inflight window (default: the agent's default)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="nengtan-drain-"))
    try:
        result = run(args.readings, args.values, args.envelope_readings, args.inflight,
                     workdir, say=not args.json)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({**asdict(result), "verdicts": [
            {"target": n, "value": v, "met": ok} for n, v, ok in result.verdicts()]}, indent=2))
    else:
        print(report(result))
    return 0 if all(ok for _, _, ok in result.verdicts()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
