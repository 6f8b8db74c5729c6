"""A half-open link: the path to the broker starts dropping everything, both ways, and nobody
sends a FIN or an RST (a NAT entry expired, a firewall or isolation device stalled, a cable
pulled behind a switch). TCP alone would not notice for many minutes; MQTT keepalive must.

A relay of our own sits between the real ``MqttUplink`` (driven in-process, as the agent loop
drives it) and a real Mosquitto. On command it stops forwarding in both directions while keeping
every socket open, so the kernel still acknowledges the TCP segments and only the MQTT layer can
tell. The uplink must notice within 1.5 × keepalive, give every in-flight envelope back to the
buffer, reconnect once a path exists again, and end with every envelope accepted exactly once.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from paho.mqtt.enums import CallbackAPIVersion

from agent.buffer import MemoryBuffer
from agent.outputs.mqtt.config import MqttConfig
from agent.outputs.mqtt.uplink import MqttUplink
from hw_tests.conftest import require_mosquitto
from nengtan.broker import Broker, start_broker
from nengtan.envelope import Reading, seal
from nengtan.jws import Ed25519Signer

pytestmark = pytest.mark.hw

GATEWAY = "gw-half-open"
KEEPALIVE_S = 2
# What the bound allows on top of 1.5 × keepalive: the uplink learns of paho's close through
# on_disconnect → wake → the next pump, a thread switch or two (CPython hands the GIL over every
# 5 ms) plus this test loop's own 10 ms wait; 0.2 s is ample on a loaded CI machine and still far
# below the 1 s a missed keepalive check would cost.
SCHEDULING_MARGIN_S = 0.2
ROUNDS = 2


class BlackholeRelay:
    """A TCP relay 127.0.0.1:port → target. ``blackhole()`` stops forwarding in both directions
    without closing anything (bytes wait in the kernel buffers, unread); ``resume()`` forwards
    them again, as a healed network path would deliver TCP's retransmissions."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._peer: dict[socket.socket, socket.socket] = {}
        self._held: set[socket.socket] = set()  # open, but not read from
        self._lock = threading.Lock()
        # (command number, forward the open flows, forward flows opened later): every command,
        # even a repeated one, is applied once by the relay thread.
        self._wanted: tuple[int, bool, bool] = (0, True, True)
        self._applied = self._wanted
        self.blackholed_at = 0.0
        self.flows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blackhole relay", daemon=True)
        self._thread.start()

    def blackhole(self, *, new_flows_too: bool) -> float:
        """Stall every open flow; with ``new_flows_too`` also every flow opened from now on.
        Returns the monotonic time at which the relay thread really stopped forwarding."""
        self._command(False, not new_flows_too)
        return self.blackholed_at

    def resume(self) -> None:
        self._command(True, True)

    def _command(self, open_flows: bool, new_flows: bool) -> None:
        with self._lock:
            self._wanted = wanted = (self._wanted[0] + 1, open_flows, new_flows)
        while self._applied != wanted:
            time.sleep(0.001)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                wanted = self._wanted
            if wanted != self._applied:
                self._apply(wanted)
            for key, _ in self._selector.select(timeout=0.01):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                else:
                    self._forward(sock)

    def _apply(self, wanted: tuple[int, bool, bool]) -> None:
        if not wanted[1]:
            for sock in self._peer:
                if sock not in self._held:
                    self._selector.unregister(sock)
                    self._held.add(sock)
            self.blackholed_at = time.monotonic()
        else:
            for sock in self._held:
                self._selector.register(sock, selectors.EVENT_READ)
            self._held.clear()
        self._applied = wanted

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        upstream = socket.create_connection(self._target)
        self._peer[client], self._peer[upstream] = upstream, client
        self.flows += 1
        for sock in (client, upstream):
            sock.setblocking(True)
            if self._applied[2]:
                self._selector.register(sock, selectors.EVENT_READ)
            else:
                self._held.add(sock)

    def _forward(self, sock: socket.socket) -> None:
        peer = self._peer.get(sock)
        if peer is None:
            return  # its flow was closed by the other end's event in the same select() round
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        for end in (sock, peer):  # one side ended: end the other too, as a relay would
            self._peer.pop(end, None)
            if end in self._held:
                self._held.discard(end)
            else:
                self._selector.unregister(end)
            end.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in [*self._peer, self._listener]:
            sock.close()
        self._selector.close()


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    require_mosquitto()
    monkeypatch.setenv("PATH", os.environ["PATH"] + os.pathsep + "/usr/sbin")
    broker = start_broker(tmp_path / "broker", prefer="mosquitto")
    yield broker
    broker.stop()


@pytest.fixture
def relay(broker: Broker) -> Iterator[BlackholeRelay]:
    relay = BlackholeRelay((broker.host, broker.port))
    yield relay
    relay.close()


@dataclass
class Loop:
    """The agent loop's forwarding (``Agent.forward``), with a ledger of every verdict."""

    uplink: MqttUplink
    buffer: MemoryBuffer
    wake: threading.Event
    accepted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # every seq handed to publish()

    def turn(self) -> None:
        self.wake.wait(0.01)
        self.wake.clear()
        verdicts = self.uplink.pump()
        if verdicts.accepted or verdicts.rejected:
            self.buffer.end(verdicts.accepted, verdicts.rejected)
            self.accepted += verdicts.accepted
            self.rejected += verdicts.rejected
        window = self.uplink.window
        if window <= 0:
            return
        for sealed in self.buffer.begin(max_envelopes=window, max_readings=1):
            self.sent.append(sealed.seq)
            if not self.uplink.publish(sealed):
                self.buffer.end([], [sealed.seq])
                self.rejected.append(sealed.seq)

    def until(self, condition: object, what: str, timeout: float) -> None:
        assert callable(condition)
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.uplink.stats}")
            self.turn()

    def add(self, count: int) -> list[int]:
        now_ms = int(time.time() * 1000)
        return [self.buffer.add([Reading("m1", "active_energy_import", now_ms + i, float(i), "good")],
                                taken_ms=now_ms + i, time_synced=True) for i in range(count)]


def _observe_state(broker: Broker) -> tuple[mqtt.Client, list[dict[str, object]]]:
    seen: list[dict[str, object]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="half-open-observer",
                         protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, message: seen.append(json.loads(message.payload))
    client.connect(broker.host, broker.port)
    client.subscribe(f"nengtan/v1/{GATEWAY}/state", qos=1)
    client.loop_start()
    return client, seen


def _outage(loop: Loop, relay: BlackholeRelay, heal: str) -> tuple[float, list[int]]:
    """Blackhole the live link with envelopes in flight and wait for a new session; return how
    long the uplink took to notice, and the envelopes that were in flight."""
    # A random phase against paho's pings, so that the rounds do not all measure one case.
    settle = time.monotonic() + random.uniform(0.0, 1.0)
    loop.until(lambda: time.monotonic() >= settle, "the link to idle", timeout=5)
    stats = loop.uplink.stats
    disconnects, sessions = stats.disconnects, stats.sessions
    started = relay.blackhole(new_flows_too=heal == "resume")
    in_flight = loop.add(3)
    loop.until(lambda: stats.disconnects > disconnects, "the dead link", timeout=3 * KEEPALIVE_S + 5)
    detection = time.monotonic() - started
    # Nothing was acknowledged through the blackhole; it all went back to the buffer.
    assert set(in_flight) <= set(loop.sent) and set(in_flight) <= set(loop.rejected)
    assert not set(in_flight) & set(loop.accepted)
    if heal == "resume":  # the outage outlasts the detection, then the path comes back
        loop.until(lambda: time.monotonic() >= started + 1.5 * KEEPALIVE_S + 1.0,
                   "the outage to last", timeout=10)
        relay.resume()
    loop.until(lambda: stats.sessions == sessions + 1, "a new session", timeout=20)
    return detection, in_flight


@pytest.mark.parametrize(("protocol", "heal"), [("5", "resume"), ("5", "new flow"),
                                                ("3.1.1", "resume")])
def test_a_blackholed_link_is_noticed_within_one_and_a_half_keepalives_and_nothing_is_lost(
        broker: Broker, relay: BlackholeRelay, protocol: str, heal: str) -> None:
    config = MqttConfig("127.0.0.1", relay.port, protocol, "nengtan/v1", KEEPALIVE_S, 1, 5, None,
                        None, False, None)
    wake = threading.Event()
    signer = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
    loop = Loop(MqttUplink(config, gateway=GATEWAY, wake=wake),
                MemoryBuffer(gateway=GATEWAY, sealer=lambda e: seal(signer, e)), wake)
    observer, states = _observe_state(broker)
    detections: list[float] = []
    expected = loop.add(5)
    try:
        loop.until(lambda: len(loop.accepted) == 5, "the first 5 PUBACKs", timeout=15)
        for _ in range(ROUNDS):
            detection, in_flight = _outage(loop, relay, heal)
            detections.append(detection)
            expected.extend(in_flight)
            loop.until(lambda: len(loop.accepted) == len(expected), "every PUBACK", timeout=15)
    finally:
        loop.uplink.close()
        # The broker forwards the last state to the observer after close() returns: give it
        # that moment before hanging up, or the assertion below races the delivery.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (states and states[-1].get("reason") == "stopped"):
            time.sleep(0.02)
        observer.disconnect()
        observer.loop_stop()

    print(f"\nhalf-open detection, keepalive {KEEPALIVE_S} s, MQTT {protocol}, {heal}: "
          + ", ".join(f"{d:.2f} s" for d in detections))
    assert all(d <= 1.5 * KEEPALIVE_S + SCHEDULING_MARGIN_S for d in detections), detections
    # Exactly once from the buffer's side: every envelope accepted once, none twice, none lost.
    assert sorted(loop.accepted) == expected and len(set(loop.accepted)) == len(loop.accepted)
    assert loop.buffer.stats().unsent_cycles == 0
    assert relay.flows >= ROUNDS + 1  # every session came through the relay
    # The broker told the world the gateway was gone, and the last word is that it is back.
    assert {"v": 1, "gw": GATEWAY, "state": "offline", "reason": "lost"} in states
    assert states[-1]["state"] == "offline" and states[-1]["reason"] == "stopped"
    assert states[-2]["state"] == "online"
