"""The uplink's two modes against a stand-in for the paho client (no socket): which QoS goes out,
what counts as sent, what the window holds, and where checkpoints go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.buffer import Sealed
from agent.outputs.mqtt.config import mqtt_config
from agent.outputs.mqtt.uplink import MqttUplink


@dataclass
class Info:
    mid: int
    rc: int = mqtt.MQTT_ERR_SUCCESS


@dataclass
class FakeClient:
    """Records publishes; the test decides when paho would report them."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    disconnected: bool = False
    on_disconnect: object = None
    on_publish: object = None
    on_connect: object = None

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> Info:
        self.calls.append({"topic": topic, "payload": payload, "qos": qos, "retain": retain})
        return Info(len(self.calls))

    def disconnect(self) -> None:
        self.disconnected = True


def _up(mode: str, **keys: Any) -> tuple[MqttUplink, FakeClient]:
    uplink = MqttUplink(mqtt_config({"host": "h", "mode": mode, **keys}), gateway="gw01")
    client = FakeClient()
    uplink._client = client  # type: ignore[assignment]
    uplink._connected.set()
    uplink._announced = True
    return uplink, client


def _written(uplink: MqttUplink, client: FakeClient, *mids: int, code: str = "Success") -> None:
    for mid in mids:
        uplink._on_publish(client, None, mid, ReasonCode(PacketTypes.PUBACK, code), None)  # type: ignore[arg-type]


def _sealed(seq: int) -> Sealed:
    return Sealed(seq, seq, f"token-{seq}", 1)


def test_one_way_sends_everything_at_qos_0_and_a_write_counts_as_sent() -> None:
    uplink, client = _up("one_way")
    assert uplink.publish(_sealed(1)) and uplink.publish(_sealed(2))
    assert uplink.publish(_sealed(1), copy=True)
    assert uplink.publish_checkpoint("cp-token")
    assert [(c["qos"], c["retain"]) for c in client.calls] == [(0, False)] * 4
    assert client.calls[3]["topic"] == "nengtan/v1/gw01/checkpoint"
    _written(uplink, client, 1, 3, 4)  # paho: the QoS 0 packets 1, 3 and 4 left the socket
    verdicts = uplink.pump()
    assert (verdicts.accepted, verdicts.rejected) == ([1], [])
    assert (verdicts.copied, verdicts.uncopied) == ([1], [])
    assert uplink.stats.published == 2 and uplink.stats.copies == 1
    assert uplink.stats.checkpoints == 1


def test_one_way_what_never_left_before_the_link_died_is_sent_again() -> None:
    uplink, client = _up("one_way")
    uplink.publish(_sealed(1))
    uplink.publish(_sealed(2))
    uplink.publish(_sealed(7), copy=True)
    _written(uplink, client, 1)
    uplink._lost.set()
    verdicts = uplink.pump()  # tears the connection down
    assert verdicts.accepted == [1] and verdicts.rejected == [2]  # back to the buffer
    assert verdicts.uncopied == [7]  # due again at once
    assert client.disconnected and not uplink.connected and uplink.window == 0


def test_one_way_the_window_bounds_unwritten_sends_and_copies_not_the_receive_maximum() -> None:
    uplink, client = _up("one_way", inflight=3)
    uplink._receive_max = 2  # a broker's Receive Maximum binds QoS > 0 only
    assert uplink.window == 3
    uplink.publish(_sealed(1))
    uplink.publish(_sealed(2), copy=True)
    assert uplink.publish_checkpoint("cp")  # outside the window
    assert uplink.window == 1
    _written(uplink, client, 1, 2)
    uplink.pump()
    assert uplink.window == 3 and not uplink.idle  # the checkpoint is still unwritten
    _written(uplink, client, 3)
    uplink.pump()
    assert uplink.idle and uplink.checkpoint_ready


def test_acknowledged_mode_sends_at_qos_1_and_a_checkpoint_holds_its_slot_until_acked() -> None:
    uplink, client = _up("acknowledged")
    uplink.publish(_sealed(1))
    assert uplink.publish_checkpoint("cp")
    assert [(c["qos"], c["retain"]) for c in client.calls] == [(1, False), (1, False)]
    assert not uplink.checkpoint_ready and not uplink.publish_checkpoint("cp2")
    assert uplink.window == 19  # the checkpoint takes no envelope slot
    _written(uplink, client, 1, 2)
    verdicts = uplink.pump()
    assert verdicts.accepted == [1] and uplink.checkpoint_ready


def test_acknowledged_mode_a_refused_puback_sends_the_envelope_again() -> None:
    uplink, client = _up("acknowledged")
    uplink.publish(_sealed(1))
    _written(uplink, client, 1, code="Quota exceeded")
    verdicts = uplink.pump()
    assert (verdicts.accepted, verdicts.rejected) == ([], [1])


@pytest.mark.parametrize("mode", ["acknowledged", "one_way"])
def test_no_checkpoint_without_a_connection(mode: str) -> None:
    uplink = MqttUplink(mqtt_config({"host": "h", "mode": mode}), gateway="gw01")
    assert not uplink.checkpoint_ready and not uplink.publish_checkpoint("cp")
    assert uplink.stats.checkpoints == 0
