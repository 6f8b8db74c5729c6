"""Retire a receiver's broker session without losing what is queued in it.

Why this exists: Mosquitto hands each member of a shared subscription its round-robin share of
new messages whether the member is connected or not, and keeps them in that member's session
(docs/receiver.md, "Running several receivers"). Deleting a member's config leaves its share
waiting until the session expires, and then the broker drops it. So a member is retired in
this order, under its own client_id, after its service has been stopped:

1. resume its session (clean start off): the broker starts resending what it queued;
2. unsubscribe at once, so the broker assigns it nothing new (the others get it all);
3. ingest what was queued, acknowledging after each commit as ``run`` does, until nothing
   has arrived for ``idle_s`` seconds;
4. end the session: MQTT 5 disconnects with a session expiry of 0; MQTT 3.1.1 connects once
   more with a clean session.
5. check it is gone: a last connection finds no session present.

Anything that goes wrong before step 4 leaves the session (and its queue) on the broker, so
retiring again, or starting the member again, picks up where it stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_receiver.broker_auth import secure
from cloud_receiver.config import MqttConfig, ReceiverConfig
from cloud_receiver.ingest import Ingestor, Outcome
from cloud_receiver.registry import Registry
from cloud_receiver.service import Subscriber, _client, _connect, subscription_filters
from cloud_receiver.store import open_store
from nengtan.errors import IdentityError, NengtanError, StoreError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0


class RetireError(NengtanError):
    """Retiring stopped before the session was ended; the session and its queue are kept."""

    hint = ("Nothing queued was lost. Stop every process using this client_id, then run "
            "`nengtan receiver retire` again.")


@dataclass(frozen=True)
class RetireResult:
    client_id: str
    session_present: bool  # False: the broker held no session under this id (nothing queued)
    outcomes: dict[str, int] = field(default_factory=dict)  # ingested messages by status
    seconds: float = 0.0

    @property
    def messages(self) -> int:
        return sum(self.outcomes.values())


class _CountingIngestor(Ingestor):
    """Counts outcomes and notes when the last message came, for the idle test."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: Counter[str] = Counter()
        self._clock = clock
        self.last_at = clock()

    def ingest(self, topic: str, payload: bytes) -> Outcome:
        self.last_at = self._clock()
        outcome = super().ingest(topic, payload)
        self.outcomes[outcome.status.value] += 1
        self.last_at = self._clock()
        return outcome


class _Retiring(Subscriber):
    """Unsubscribes where ``run`` subscribes; treats a lost connection as the end."""

    def __init__(self, ingestor: Ingestor, filters: list[str]) -> None:
        super().__init__(ingestor, filters)
        self.connected = threading.Event()
        self.unsubscribed = threading.Event()
        self.lost = threading.Event()
        self.refused: str | None = None
        self.session_present = False

    def on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                   reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            self.lost.set()
            return
        self.session_present = flags.session_present
        self.connected.set()
        client.unsubscribe(self._filters)

    def on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                       reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        log.info("unsubscribed from %s; draining what the session holds",
                 ", ".join(self._filters))
        self.unsubscribed.set()

    def on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                      reason_code: ReasonCode, properties: Properties | None) -> None:
        if self.connected.is_set():
            log.warning("connection lost while retiring: %s", reason_code)
            self.lost.set()


def _drain(config: ReceiverConfig, ingestor: _CountingIngestor, idle_s: float,
           timeout_s: float, clock: Callable[[], float]) -> bool:
    """Steps 1–3 and step 4 for MQTT 5; return whether the broker had a session."""
    subscriber = _Retiring(ingestor, subscription_filters(config.mqtt))
    client = _client(config.mqtt, subscriber)
    client.on_unsubscribe = subscriber.on_unsubscribe
    _connect(client, config.mqtt)
    deadline = clock() + timeout_s
    try:
        _wait(subscriber.unsubscribed, subscriber, clock() + CONNECT_TIMEOUT_S, clock,
              "the broker did not accept the connection and the unsubscription")
        ingestor.last_at = clock()
        while clock() - ingestor.last_at < idle_s:
            if subscriber.store_failed.is_set():
                raise StoreError("a message could not be stored; it stays queued in the "
                                 "session, which is kept: fix the database and retire again")
            if subscriber.lost.is_set():
                raise RetireError("the connection was lost (another process with this "
                                   "client_id?); the session is kept: stop it and retire again")
            if clock() > deadline:
                raise RetireError(f"messages still arriving after {timeout_s:.0f} s; the "
                                   "session is kept: retire again with a longer --timeout-s")
            time.sleep(0.05)
        if config.mqtt.protocol == "5":
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0  # MQTT 5 §3.14.2.2.2: the session ends now
            client.disconnect(properties=props)
            subscriber.connected.clear()  # our own disconnect is not a lost connection
        else:
            client.disconnect()
    finally:
        client.loop_stop()
    return subscriber.session_present


def _wait(event: threading.Event, subscriber: _Retiring, deadline: float,
          clock: Callable[[], float], what: str) -> None:
    while not event.wait(0.05):
        if subscriber.refused is not None:
            raise RetireError(f"the broker refused the connection: {subscriber.refused}")
        if clock() > deadline:
            raise RetireError(f"{what} within {CONNECT_TIMEOUT_S:.0f} s")


def session_present(config: MqttConfig, *, clean: bool) -> bool:
    """Connect once under ``config.client_id`` and report whether the broker had a session.

    ``clean=False`` with no session expiry (MQTT 5 default 0) asks without keeping anything:
    the session ends at this disconnect. ``clean=True`` discards any session (MQTT 3.1.1's
    way to end one)."""
    v5 = config.protocol == "5"
    found: dict[str, bool] = {}
    done = threading.Event()

    def on_connect(client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                   reason_code: ReasonCode, properties: Properties | None) -> None:
        found["present"] = flags.session_present
        found["ok"] = not reason_code.is_failure
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                         clean_session=None if v5 else clean)
    secure(client, config)
    client.on_connect = on_connect
    if v5:
        client.connect_async(config.host, config.port, config.keepalive_s, clean_start=clean)
    else:
        client.connect_async(config.host, config.port, config.keepalive_s)
    client.loop_start()
    try:
        if not done.wait(CONNECT_TIMEOUT_S) or not found.get("ok"):
            raise RetireError(f"cannot connect to {config.host}:{config.port} as "
                               f"{config.client_id} to check the session")
        client.disconnect()
    finally:
        client.loop_stop()
    return found["present"]


def retire(config: ReceiverConfig, *, idle_s: float = 5.0, timeout_s: float = 600.0,
           clock: Callable[[], float] = time.monotonic) -> RetireResult:
    """Drain and end the broker session of the receiver ``config`` describes (its service
    must be stopped). Raise NengtanError, keeping the session, if it cannot finish."""
    if not config.registry_dir.is_dir():
        raise IdentityError(f"the registry directory {config.registry_dir} does not exist")
    started = clock()
    store = open_store(config.storage, create=False)
    try:
        registry = Registry(store, config.registry_dir)
        registry.reload()
        ingestor = _CountingIngestor(store, registry, topic_prefix=config.mqtt.topic_prefix,
                                     timezone=ZoneInfo(config.carbon.timezone), clock=clock)
        had_session = _drain(config, ingestor, idle_s, timeout_s, clock)
    finally:
        store.close()
    if config.mqtt.protocol != "5":
        session_present(config.mqtt, clean=True)  # 3.1.1 ends a session only this way
    elif session_present(config.mqtt, clean=False):
        raise RetireError(f"the broker still holds a session for {config.mqtt.client_id} "
                           "after it was ended; check the broker's logs")
    result = RetireResult(config.mqtt.client_id, had_session, dict(ingestor.outcomes),
                          clock() - started)
    log.info("retired %s: %d message(s) drained (%s) in %.1f s", result.client_id,
             result.messages, ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))
             or "none", result.seconds)
    return result
