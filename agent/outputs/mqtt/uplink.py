"""The MQTT uplink: publish sealed envelopes at QoS 1, count them sent only on a successful PUBACK.

The agent loop owns reconnection. Each connection gets a fresh paho client: when a link dies, the
old client and its in-RAM queue are dropped and everything that was in flight goes back to the
buffer, so paho never resends behind our back and our window is the only one. paho calls
``on_publish`` from its network thread, sometimes before ``publish()`` has returned the mid, so
callbacks only append to a queue and the loop matches mids to envelopes afterwards.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.buffer import Sealed
from agent.config import MqttConfig

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 60.0


@dataclass
class UplinkStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    rejected: int = 0
    last_error: str = ""


@dataclass
class Verdicts:
    accepted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)


class MqttUplink:
    def __init__(self, config: MqttConfig, *, gateway: str, wake: threading.Event | None = None) -> None:
        self.config = config
        self.topic = f"{config.topic_prefix}/{gateway}/batch"
        self._client_id = f"nengtan-agent-{gateway}"
        self._wake = wake or threading.Event()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._lost = threading.Event()
        self._events: collections.deque[tuple[int, bool]] = collections.deque()
        self._inflight: dict[int, int] = {}  # mid -> envelope seq
        self._attempt_started = 0.0
        self._next_attempt = 0.0
        self._backoff = BACKOFF_MIN_S
        self.stats = UplinkStats()

    # -- connection lifecycle, driven by pump() -------------------------------------------------
    def _new_client(self) -> mqtt.Client:
        v5 = self.config.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # The session lives in our SQLite buffer, not in the broker or in paho's RAM.
            clean_session=None if v5 else True,
        )
        client.max_inflight_messages_set(self.config.inflight)
        if self.config.username:
            password = (self.config.password_file.read_text().strip()
                        if self.config.password_file else None)
            client.username_pw_set(self.config.username, password)
        if self.config.tls:
            client.tls_set(ca_certs=str(self.config.ca_file) if self.config.ca_file else None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: ReasonCode, properties: object) -> None:
        if reason.is_failure:
            self.stats.last_error = f"broker refused the connection: {reason}"
            self._lost.set()
        else:
            self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: ReasonCode, properties: object) -> None:
        self.stats.last_error = f"disconnected: {reason}"
        self._lost.set()
        self._wake.set()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason: ReasonCode, properties: object) -> None:
        self._events.append((mid, not reason.is_failure))
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._connected.is_set() and not self._lost.is_set()

    def _teardown(self, verdicts: Verdicts) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.on_disconnect = client.on_publish = client.on_connect = None
            client.disconnect()
            client.loop_stop()
        self._collect(verdicts)
        # Unacknowledged envelopes go back to the buffer; the next connection sends them again.
        verdicts.rejected.extend(self._inflight.values())
        self._inflight.clear()
        self._events.clear()
        self._connected.clear()
        self._lost.clear()
        self.stats.disconnects += 1
        delay = self._backoff * random.uniform(0.5, 1.0)  # jitter spreads a fleet's reconnects
        self._next_attempt = time.monotonic() + delay
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _collect(self, verdicts: Verdicts) -> None:
        while self._events:
            mid, ok = self._events.popleft()
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue
            if ok:
                verdicts.accepted.append(seq)
                self.stats.acked += 1
            else:
                verdicts.rejected.append(seq)
                self.stats.rejected += 1

    def pump(self) -> Verdicts:
        """Advance the connection state machine; return the acknowledgements that came in."""
        verdicts = Verdicts()
        now = time.monotonic()
        if self._client is None:
            if now >= self._next_attempt:
                self._start(now)
        elif self._lost.is_set():
            self._teardown(verdicts)
        elif not self._connected.is_set() and now - self._attempt_started > CONNECT_TIMEOUT_S:
            self.stats.last_error = f"no CONNACK from {self.config.host}:{self.config.port} in time"
            self._teardown(verdicts)
        else:
            if self._connected.is_set() and self._backoff != BACKOFF_MIN_S:
                self._backoff = BACKOFF_MIN_S
            self._collect(verdicts)
        return verdicts

    def _start(self, now: float) -> None:
        self._attempt_started = now
        self._client = self._new_client()
        self.stats.connects += 1
        try:
            self._client.connect_async(self.config.host, self.config.port, self.config.keepalive_s)
            self._client.loop_start()
        except (OSError, ValueError) as exc:
            self.stats.last_error = f"cannot start connecting: {exc}"
            self._lost.set()

    # -- publishing ------------------------------------------------------------------------------
    @property
    def window(self) -> int:
        """How many more envelopes may be published before the oldest is acknowledged."""
        return self.config.inflight - len(self._inflight) if self.connected else 0

    def publish(self, sealed: Sealed) -> bool:
        """Publish one envelope at QoS 1; False if the client refused it (it stays in the buffer)."""
        if self._client is None or not self.connected:
            return False
        info = self._client.publish(self.topic, sealed.token.encode("ascii"), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.stats.last_error = f"publish refused: {mqtt.error_string(info.rc)}"
            self._lost.set()
            return False
        self._inflight[info.mid] = sealed.seq
        self.stats.published += 1
        return True

    def close(self) -> Verdicts:
        verdicts = Verdicts()
        if self._client is not None:
            self._collect(verdicts)
            self._teardown(verdicts)
        return verdicts
