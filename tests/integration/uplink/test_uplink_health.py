"""The retained state and status topics through a real Mosquitto: online on connect, the Last Will
when the link dies without a DISCONNECT, offline on a clean stop, and a status after each connect."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uplink_helpers import (
    GATEWAY,
    Ledger,
    Mosquitto,
    Observer,
    add_cycles,
    drive,
    memory_buffer,
    uplink_config,
    wait_for,
)

from agent.health import HealthPublisher, HealthSnapshot, snapshot
from agent.modbus._stats import MeterStats
from agent.outputs.mqtt.uplink import SIDE_SLOTS, MqttUplink

pytestmark = pytest.mark.integration

STATE = f"nengtan/v1/{GATEWAY}/state"
STATUS = f"nengtan/v1/{GATEWAY}/status"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker")
    yield broker
    broker.stop()


def _docs(payloads: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(p) for p in payloads]


def _retained(port: int, topic: str) -> dict[str, Any]:
    """What a newcomer is told on ``topic``: the retained message, flagged as such."""
    observer = Observer(port, [topic])
    try:
        wait_for(lambda: bool(observer.messages), f"the retained message on {topic}")
        found, payload, retained = observer.messages[0]
    finally:
        observer.close()
    assert found == topic and retained
    doc: dict[str, Any] = json.loads(payload)
    return doc


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_state_says_online_on_connect_lost_from_the_will_and_offline_on_a_clean_stop(
        broker: Mosquitto, protocol: str) -> None:
    observer = Observer(broker.port, [STATE, STATUS])
    wake = threading.Event()
    uplink = MqttUplink(uplink_config(broker.port, protocol=protocol, keepalive_s=5),
                        gateway=GATEWAY, wake=wake)
    buffer, ledger = memory_buffer(), Ledger()
    health = HealthPublisher(uplink, every_s=60)
    buses = {"/dev/ttyUSB0": {"m1": MeterStats(silent=2, garbled=1, exceptions=1, ok=10)},
             "tcp://10.0.0.5:502": {"m2": MeterStats(ok=3)}}

    def tick() -> None:
        health.tick(lambda: snapshot(buffer.stats(), buses, clock_synced=True))

    try:
        seqs = add_cycles(buffer, 3)
        drive(uplink, buffer, ledger, lambda: (tick(), len(ledger.accepted) == 3)[1],
              "3 PUBACKs", wake=wake)
        assert sorted(ledger.accepted) == seqs
        wait_for(lambda: len(observer.on(STATE)) == 1 and len(observer.on(STATUS)) == 1,
                 "online and a first status")
        online, = _docs(observer.on(STATE))
        assert online["state"] == "online" and online["gw"] == GATEWAY and online["since"] > 0
        assert _retained(broker.port, STATE)["state"] == "online"
        status = _retained(broker.port, STATUS)
        assert status["bus_errors"] == {"/dev/ttyUSB0": 4, "tcp://10.0.0.5:502": 0}
        assert status["uplink"] == {"sessions": 1, "attempts": 1}

        # Cut the TCP connection under paho: the broker sees it end without a DISCONNECT.
        assert uplink._client is not None
        uplink._client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        drive(uplink, buffer, ledger, lambda: (tick(), uplink.stats.sessions == 2)[1],
              "a second session", wake=wake)
        wait_for(lambda: len(observer.on(STATE)) == 3, "lost and online again")
        _, lost, again = _docs(observer.on(STATE))
        assert lost == {"v": 1, "gw": GATEWAY, "state": "offline", "reason": "lost"}
        assert again["state"] == "online"
        # A new connection brings a fresh status at once, without waiting for the timer.
        wait_for(lambda: len(observer.on(STATUS)) == 2, "a status after the reconnect")
        assert json.loads(observer.on(STATUS)[-1])["uplink"]["sessions"] == 2
    finally:
        uplink.close()
    wait_for(lambda: len(observer.on(STATE)) == 4, "offline")
    stopped = json.loads(observer.on(STATE)[-1])
    assert stopped["state"] == "offline" and stopped["reason"] == "stopped" and stopped["since"] > 0
    assert _retained(broker.port, STATE)["reason"] == "stopped"
    observer.close()


def test_while_disconnected_no_status_is_made_or_queued(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    port = broker.port
    broker.stop()  # nobody listens there any more
    uplink = MqttUplink(uplink_config(port), gateway=GATEWAY)
    buffer, ledger, wake = memory_buffer(), Ledger(), threading.Event()
    health = HealthPublisher(uplink, every_s=5)
    made: list[HealthSnapshot] = []

    def make() -> HealthSnapshot:
        made.append(snapshot(buffer.stats(), {}, clock_synced=False))
        return made[-1]

    try:
        drive(uplink, buffer, ledger, lambda: (health.tick(make), uplink.stats.connects >= 2)[1],
              "two attempts", wake=wake)
    finally:
        uplink.close()
    assert made == [] and health.published == 0
    assert not uplink.publish_status(b"{}")


@pytest.mark.parametrize(("protocol", "window"), [("5", 5 - SIDE_SLOTS), ("3.1.1", 20)])
def test_the_brokers_receive_maximum_bounds_the_window_and_keeps_room_for_the_status(
        tmp_path: Path, protocol: str, window: int) -> None:
    # Mosquitto announces max_inflight_messages as its Receive Maximum (MQTT 5 only).
    broker = Mosquitto(tmp_path / "broker", ["allow_anonymous true", "max_inflight_messages 5"])
    uplink = MqttUplink(uplink_config(broker.port, protocol=protocol, inflight=20), gateway=GATEWAY)
    buffer, ledger, wake = memory_buffer(), Ledger(), threading.Event()
    try:
        drive(uplink, buffer, ledger, lambda: uplink.connected, "a session", wake=wake)
        assert uplink.window == window
        assert uplink.publish_status(b"{}")
        assert uplink.window == window  # the status took none of the envelopes' slots
    finally:
        uplink.close()
        broker.stop()
