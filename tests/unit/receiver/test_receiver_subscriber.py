"""The MQTT callbacks: acknowledge only after the store committed; never let an error escape."""

from __future__ import annotations

from dataclasses import dataclass, field

from receiver_helpers import TOPIC, Batches

from cloud_receiver.ingest import Ingestor
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
