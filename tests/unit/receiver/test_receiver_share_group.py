"""Several receivers: the shared-subscription config and filters, and the registry refresh that
lets a key revoked by another process take effect in a running receiver."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from receiver_helpers import GATEWAY, TOPIC, Batches

from cloud_receiver.config import parse_config
from cloud_receiver.ingest import Ingestor
from cloud_receiver.registry import Registry
from cloud_receiver.service import Subscriber, subscription_filters
from cloud_receiver.store import Revocation, Store
from nengtan.errors import ConfigError, StoreError
from nengtan.jws import Ed25519Signer

MINIMAL = {"storage": {"path": "receiver.db"}, "registry": {"dir": "gateways"}}


def test_without_a_share_group_the_receiver_subscribes_plainly(tmp_path: Path) -> None:
    config = parse_config(MINIMAL, base_dir=tmp_path)
    assert config.mqtt.share_group is None
    assert subscription_filters(config.mqtt) == ["nengtan/v1/+/batch", "nengtan/v1/+/checkpoint"]


def test_a_share_group_puts_both_filters_in_the_shared_subscription(tmp_path: Path) -> None:
    config = parse_config({**MINIMAL, "mqtt": {"share_group": "ingest", "client_id": "rx-a",
                                               "topic_prefix": "plant/v1/"}}, base_dir=tmp_path)
    assert subscription_filters(config.mqtt) == ["$share/ingest/plant/v1/+/batch",
                                                 "$share/ingest/plant/v1/+/checkpoint"]


@pytest.mark.parametrize("group", ["a/b", "in+gest", "#", ""])
def test_a_share_group_with_a_topic_separator_or_wildcard_is_a_config_error(group: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "mqtt": {"share_group": group}}, "test.toml")
    problems = caught.value.problems
    assert problems and all(p.startswith("At 'mqtt.share_group': ") for p in problems), problems


@dataclass
class FakeClient:
    acked: list[int] = field(default_factory=list)
    disconnects: int = 0

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def disconnect(self) -> None:
        self.disconnects += 1


@dataclass
class FakeMessage:
    payload: bytes
    mid: int
    topic: str = TOPIC
    qos: int = 1


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_revoked_by_another_process_takes_effect_within_the_refresh_interval(
        ingestor: Ingestor, registry: Registry, store: Store, batches: Batches,
        signer: Ed25519Signer) -> None:
    clock, client = Clock(), FakeClient()
    subscriber = Subscriber(ingestor, "nengtan/v1/+/batch", refresh=registry.refresh,
                            refresh_every_s=10.0, clock=clock)
    subscriber.on_message(client, None, FakeMessage(batches.seal(1).encode(), 1))  # type: ignore[arg-type]
    # `nengtan receiver keys revoke` in another process writes only to the database.
    store.revoke_key(Revocation(signer.kid, GATEWAY, 1, 2, "key leaked",
                                "2025-06-01T09:00:00+08:00", "test"))
    clock.now += 9.9  # the cached registry does not know yet
    subscriber.on_message(client, None, FakeMessage(batches.seal(2).encode(), 2))  # type: ignore[arg-type]
    clock.now += 0.2  # now it is re-read before the message is checked
    subscriber.on_message(client, None, FakeMessage(batches.seal(3).encode(), 3))  # type: ignore[arg-type]
    assert client.acked == [1, 2, 3]
    assert store.stats()["envelopes"] == 2
    assert store.quarantine_counts() == {"revoked_key": 1}


def test_a_refresh_that_cannot_read_the_store_sends_no_ack(
        ingestor: Ingestor, batches: Batches) -> None:
    def broken() -> None:
        raise StoreError("receiver database: connection lost (simulated)")

    clock, client = Clock(), FakeClient()
    subscriber = Subscriber(ingestor, "nengtan/v1/+/batch", refresh=broken,
                            refresh_every_s=10.0, clock=clock)
    clock.now += 10.0
    subscriber.on_message(client, None, FakeMessage(batches.seal(1).encode(), 4))  # type: ignore[arg-type]
    assert (client.acked, client.disconnects) == ([], 1)
    assert subscriber.store_failed.is_set()


def test_pahos_not_connected_after_a_requested_disconnect_is_no_error(
        caplog: pytest.LogCaptureFixture) -> None:
    paho_log = logging.getLogger("cloud_receiver.paho")  # service installs its filter here
    with caplog.at_level(logging.INFO):
        paho_log.error("Client is not connected. Socket: %r). Last known Connection State: %s",
                       None, "MQTT_CS_DISCONNECTED")
        paho_log.error("failed to receive on socket: boom")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "failed to receive on socket: boom")]
