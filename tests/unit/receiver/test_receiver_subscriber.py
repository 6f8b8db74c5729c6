"""The MQTT callbacks: acknowledge only after the store committed; never let an error escape."""

from __future__ import annotations

from dataclasses import dataclass, field

from receiver_helpers import CHECKPOINT_TOPIC, TOPIC, Batches

from cloud_receiver.ingest import Ingestor, topic_filters
from cloud_receiver.service import Subscriber
from cloud_receiver.store import Store


@dataclass
class FakeClient:
    """Records what the subscriber asks of the client; the store is inspected at ack time."""

    store: Store
    acked: list[tuple[int, int, int]] = field(default_factory=list)  # (mid, qos, envelopes)
    disconnects: int = 0

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append((mid, qos, self.store.stats()["envelopes"]))

    def disconnect(self) -> None:
        self.disconnects += 1


@dataclass
class FakeMessage:
    payload: bytes
    mid: int
    topic: str = TOPIC
    qos: int = 1


def test_a_message_is_acknowledged_after_its_envelope_is_committed(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    client = FakeClient(store)
    subscriber = Subscriber(ingestor, "nengtan/v1/+/batch")
    subscriber.on_message(client, None, FakeMessage(batches.seal(1).encode(), mid=7))  # type: ignore[arg-type]
    assert client.acked == [(7, 1, 1)]  # the envelope was already stored when the ack went out


def test_a_quarantined_message_is_acknowledged_too(ingestor: Ingestor, store: Store) -> None:
    client = FakeClient(store)
    Subscriber(ingestor, "nengtan/v1/+/batch").on_message(
        client, None, FakeMessage(b"junk", mid=8))  # type: ignore[arg-type]
    assert [mid for mid, _, _ in client.acked] == [8]
    assert store.quarantine_counts() == {"malformed": 1}


def test_a_database_failure_sends_no_ack_and_drops_the_connection_for_redelivery(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    client = FakeClient(store)
    subscriber = Subscriber(ingestor, "nengtan/v1/+/batch")
    store.close()
    subscriber.on_message(client, None, FakeMessage(batches.seal(1).encode(), mid=9))  # type: ignore[arg-type]
    assert client.acked == []
    assert client.disconnects == 1
    assert subscriber.store_failed.is_set()


def test_the_receiver_subscribes_to_batches_and_checkpoints(ingestor: Ingestor) -> None:
    from paho.mqtt.reasoncodes import ReasonCode

    calls: list[object] = []

    class Client:
        def subscribe(self, topics: object) -> None:
            calls.append(topics)

    subscriber = Subscriber(ingestor, topic_filters("nengtan/v1/"))
    flags = type("Flags", (), {"session_present": False})()
    subscriber.on_connect(Client(), None, flags, ReasonCode(2, identifier=0), None)  # type: ignore[arg-type]
    assert calls == [[("nengtan/v1/+/batch", 1), ("nengtan/v1/+/checkpoint", 1)]]


def test_a_checkpoint_message_is_stored_then_acknowledged(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    client = FakeClient(store)
    batches.seal(1)
    message = FakeMessage(batches.checkpoint(1).encode(), mid=11, topic=CHECKPOINT_TOPIC)
    Subscriber(ingestor, topic_filters("nengtan/v1")).on_message(client, None, message)  # type: ignore[arg-type]
    assert [mid for mid, _, _ in client.acked] == [11]
    assert store.stats()["checkpoints"] == 1
