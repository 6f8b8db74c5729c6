"""A data diode for tests: what a one-way gateway does to MQTT, without the hardware.

Real diodes terminate TCP on each side and forward only payloads ("protocol break"); whatever
the far side loses, the near side never hears of it (reliability.md §2.6). This one subscribes
to ``#`` on the near broker, where the agent publishes, and republishes every message on the far
broker, where the receiver listens, at QoS 1 with the same topic. Nothing ever flows back, and
the only acknowledgements the agent can see come from the near broker.

It loses messages on purpose: each message with probability ``loss`` (a seeded generator, so a
run is repeatable given the same message order), and every message ``drop`` picks. It records
what it forwarded and what it dropped, batch envelopes by cycle range, so a test can tell the
losses it caused from any other.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from nengtan.checkpoint import CHECKPOINT_MEDIA_TYPE, decode_checkpoint
from nengtan.envelope import decode_batch
from nengtan.errors import EnvelopeError
from nengtan.jws import parse_compact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Seen:
    """One message as the diode saw it: ``kind`` is the topic's last level (batch, checkpoint,
    state, status); ``seq``..``last`` the cycles of a batch envelope (a checkpoint's ``last``)."""

    topic: str
    kind: str
    seq: int | None = None
    last: int | None = None


def inspect(topic: str, payload: bytes) -> Seen:
    kind = topic.rsplit("/", 1)[-1]
    try:
        if kind == "batch":
            compact = parse_compact(payload)
            batch = decode_batch(compact.payload, str(compact.header.get("typ")))
            return Seen(topic, kind, batch.seq, batch.last)
        if kind == "checkpoint":
            compact = parse_compact(payload)
            if compact.header.get("typ") == CHECKPOINT_MEDIA_TYPE:
                return Seen(topic, kind, None, decode_checkpoint(compact.payload).last)
    except EnvelopeError:
        pass
    return Seen(topic, kind)


@dataclass
class DiodeStats:
    forwarded: Counter[str] = field(default_factory=Counter)  # by kind
    dropped: Counter[str] = field(default_factory=Counter)
    #: every batch envelope copy, by (seq, last): how often it went through, how often dropped
    batches_forwarded: Counter[tuple[int, int]] = field(default_factory=Counter)
    batches_dropped: Counter[tuple[int, int]] = field(default_factory=Counter)


class Diode:
    def __init__(self, near: tuple[str, int], far: tuple[str, int], *, loss: float = 0.0,
                 seed: int = 0, drop: Callable[[Seen], bool] | None = None,
                 name: str = "diode") -> None:
        self._near_addr, self._far_addr = near, far
        self.loss, self._rng = loss, random.Random(seed)
        self.drop = drop or (lambda seen: False)
        self._lock = threading.Lock()
        self.stats = DiodeStats()
        self._unacked: set[int] = set()  # far-side publishes the far broker has not acked yet
        self._acked_early: set[int] = set()
        self._last_activity = time.monotonic()
        self._subscribed = threading.Event()
        self._far_up = threading.Event()
        self._far = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-far",
                                protocol=mqtt.MQTTv5)
        self._far.max_inflight_messages_set(100)
        self._far.on_connect = lambda c, u, f, rc, p: self._far_up.set()
        self._far.on_publish = self._on_far_publish
        self._near = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-near",
                                 protocol=mqtt.MQTTv5)
        self._near.on_connect = self._on_near_connect
        self._near.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self._near.on_message = self._on_message

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Diode:
        self._far.connect(*self._far_addr, keepalive=30)
        self._far.loop_start()
        self._near.connect(*self._near_addr, keepalive=30)
        self._near.loop_start()
        if not (self._far_up.wait(timeout) and self._subscribed.wait(timeout)):
            self.stop()
            raise RuntimeError("the diode could not connect to both brokers")
        return self

    def stop(self) -> None:
        for client in (self._near, self._far):
            client.disconnect()
            client.loop_stop()

    # -- forwarding ---------------------------------------------------------------------------
    def _on_near_connect(self, client: mqtt.Client, userdata: object, flags: object,
                         reason: ReasonCode, properties: object) -> None:
        client.subscribe("#", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        seen = inspect(message.topic, payload)
        with self._lock:
            self._last_activity = time.monotonic()
            # Draw for every message, so the random losses do not depend on the chosen ones.
            lost = self._rng.random() < self.loss
            if self.drop(seen) or lost:
                self.stats.dropped[seen.kind] += 1
                if seen.kind == "batch" and seen.seq is not None and seen.last is not None:
                    self.stats.batches_dropped[(seen.seq, seen.last)] += 1
                return
            self.stats.forwarded[seen.kind] += 1
            if seen.kind == "batch" and seen.seq is not None and seen.last is not None:
                self.stats.batches_forwarded[(seen.seq, seen.last)] += 1
        # Outside our lock: paho calls on_publish holding its own, which publish() takes too.
        info = self._far.publish(message.topic, payload, qos=1, retain=message.retain)
        with self._lock:
            if info.mid in self._acked_early:  # the PUBACK came before publish() returned
                self._acked_early.discard(info.mid)
            else:
                self._unacked.add(info.mid)

    def _on_far_publish(self, client: mqtt.Client, userdata: object, mid: int,
                        reason: ReasonCode, properties: object) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._acked_early.add(mid)
            self._last_activity = time.monotonic()

    # -- what tests look at -------------------------------------------------------------------
    def quiet_for(self) -> float:
        """Seconds since the last message came in or the far broker last acknowledged one;
        0 while the far broker still owes an acknowledgement."""
        with self._lock:
            return 0.0 if self._unacked else time.monotonic() - self._last_activity

    def lost_batches(self) -> set[tuple[int, int]]:
        """Envelopes (seq, last) of which every copy that came through here was dropped."""
        with self._lock:
            return set(self.stats.batches_dropped) - set(self.stats.batches_forwarded)
