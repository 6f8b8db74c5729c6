"""The MQTT uplink: publish sealed envelopes at QoS 1, count them sent only on a successful PUBACK
(mode "acknowledged"), or, across a data diode (mode "one_way"), at QoS 0, sent once written.

The agent loop owns reconnection. Each connection gets a fresh paho client and its own network
thread: when a link dies, the old client and its in-RAM queue are dropped and everything that was
in flight goes back to the buffer, so paho never resends behind our back and our window is the
only one. paho calls ``on_publish`` from its network thread, sometimes before ``publish()`` has
returned the mid, so callbacks only append to a queue and the loop matches mids afterwards.

Next to the batches the uplink keeps the gateway's retained ``state`` topic (a Last Will on every
connection, ``online`` once it is up, ``offline`` on a clean stop), carries the health status for
``agent.health`` and the signed checkpoints (not retained). Those side messages are never
buffered and never take one of the envelopes' window slots.

One-way mode: a diode terminates TCP on the near side, so every PUBACK would come from a proxy
and prove nothing about the far side. Everything then goes out at QoS 0: paho reports a QoS 0
message as published once it is written to the socket, a local fact, and that is when an
envelope counts as sent (so one that never left, because the link died first, is sent again).
Why not QoS 1 with the acks ignored: paho keeps QoS 1 messages until their PUBACK and paces its
in-flight window by them, so a proxy that acks slowly, or not at all, would still stall the
stream; with QoS 0 the only back-pressure is TCP's own, from the near side, which is real. The
window (``inflight``) then bounds what is handed to paho but not yet written. Redundant copies
(``publish(copy=True)``) are reported apart from first sends, as ``copied``/``uncopied``.

Sessions: always a clean start, no session kept on the broker (MQTT 5: Clean Start 1, Session
Expiry 0; 3.1.1: Clean Session 1). A persistent session would buy us nothing: we only publish,
and for QoS 1 messages *from* a client the broker keeps no session state at all (MQTT 5 §4.1
lists only QoS 2 receipts); the state worth keeping is the client's unacknowledged publishes,
and those live in our buffer, which sends them again on the next connection. A session would
only make the broker hold state for an id it cannot use, and would oblige us (MQTT-4.4.0-1) to
resend in-flight packets under their old packet ids, which a fresh client cannot do.
"""

from __future__ import annotations

import collections
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.buffer import Sealed
from agent.health import offline_payload, online_payload
from agent.outputs.mqtt.config import MqttConfig
from nengtan.tls import broker_tls_context

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 60.0
SIDE_SLOTS = 3  # at most one state, one status and one checkpoint in flight, besides envelopes
RECEIVE_MAX_DEFAULT = 65535  # MQTT 5 §3.2.2.3.3, when the CONNACK does not say
CLOSE_WAIT_S = 3.0  # how long a clean stop waits for the goodbye and DISCONNECT to leave


def paho_keepalive(keepalive_s: int) -> int:
    """The keepalive we hand to paho (and so to the broker) for a configured ``keepalive_s``.

    paho sends PINGREQ only after a full keepalive without traffic and then waits another full
    keepalive for PINGRESP, checking once per network-loop turn (≤ 1 s): a silently dead link
    takes up to 2 × keepalive + 1 s to notice (measured through the blackhole relay of
    hw_tests/test_half_open.py: up to 3.7 s with keepalive 2, 9.0 s with keepalive 5). With
    half the configured value that is ≤ keepalive_s + 1 s, inside the promised 1.5 × keepalive_s
    for every allowed value (≥ 5 s; 2 s in the test). The broker, which drops us after 1.5 times
    what we send, notices a dead gateway sooner too, and the cost is one 2-byte ping each way
    per half keepalive.
    """
    return max(1, keepalive_s // 2)


def _network_thread_writes(client: mqtt.Client, userdata: object, sock: object) -> None:
    """Registered so that only the network thread writes to the socket.

    paho writes a queued packet at once from the publishing thread unless it runs its own
    loop thread (``loop_start``) or has this callback. Our network thread runs the loop itself,
    so without it the agent loop and the network thread both wrote: a PUBLISH could be
    overtaken by the DISCONNECT of a clean stop (the "stopped" state lost, or the Will sent
    after it; tests/integration/uplink/test_uplink_health.py caught it about one run in ten),
    and a partial write under backpressure could interleave two packets. With it,
    ``publish`` and ``disconnect`` only queue and wake the loop's select through paho's socket
    pair, which ``Client.loop`` creates (``loop_forever`` does not: a queued packet then
    waited for the select's timeout, and a DISCONNECTING client past its keepalive was closed
    before it was written)."""


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """TLS 1.2 or newer; the broker's certificate chain and host name are always verified
    (``nengtan.tls``, shared with the receiver). Reads the CA, certificate and key files; an
    OSError names the file that could not be used."""
    return broker_tls_context(config.ca_file, config.cert_file, config.key_file)


@dataclass
class UplinkStats:
    connects: int = 0  # attempts
    sessions: int = 0  # connections that came up
    disconnects: int = 0
    published: int = 0  # envelopes, first sends
    copies: int = 0  # one_way: envelopes sent again
    checkpoints: int = 0
    acked: int = 0
    rejected: int = 0
    last_error: str = ""


@dataclass
class Verdicts:
    """What became of published envelopes (by first seq) since the last ``pump``."""

    accepted: list[int] = field(default_factory=list)  # acked (one_way: written to the socket)
    rejected: list[int] = field(default_factory=list)  # refused, or in flight when the link died
    copied: list[int] = field(default_factory=list)  # one_way: a resent copy was written
    uncopied: list[int] = field(default_factory=list)  # one_way: a resent copy never left


class MqttUplink:
    def __init__(self, config: MqttConfig, *, gateway: str, wake: threading.Event | None = None,
                 wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.config = config
        self._gateway = gateway
        base = f"{config.topic_prefix}/{gateway}"
        self.topic = f"{base}/batch"
        self.state_topic = f"{base}/state"
        self.status_topic = f"{base}/status"
        self.checkpoint_topic = f"{base}/checkpoint"
        self._qos = 0 if config.one_way else 1
        self._client_id = f"nengtan-agent-{gateway}"
        self._wake = wake or threading.Event()
        self._wall_ms = wall_ms
        self._client: mqtt.Client | None = None
        # Callbacks of a retired client may still be running; under this lock they check that
        # they belong to the current client before touching anything.
        self._guard = threading.Lock()
        self._network: threading.Thread | None = None
        self._connected = threading.Event()
        self._lost = threading.Event()
        self._announced = False  # "online" published on this connection
        self._receive_max = RECEIVE_MAX_DEFAULT  # the broker's, for this connection
        self._events: collections.deque[tuple[int, bool, str]] = collections.deque()
        self._inflight: dict[int, int] = {}  # mid -> envelope seq
        self._copies: dict[int, int] = {}  # mid -> envelope seq of a resent copy (one_way)
        self._side: dict[int, str] = {}  # mid -> "state", "status" or "checkpoint"; not in the window
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
            # No broker session (see the module docstring); 5 sets Clean Start in connect_async.
            clean_session=None if v5 else True,
            reconnect_on_failure=False,  # the agent loop reconnects, with a fresh client
        )
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        client.max_inflight_messages_set(self.config.inflight + SIDE_SLOTS)
        if self.config.username:
            password = (self.config.password_file.read_text().strip()
                        if self.config.password_file else None)
            client.username_pw_set(self.config.username, password)
        if self.config.tls:
            client.tls_set_context(tls_context(self.config))
        # Set on every connection: if this one dies without a DISCONNECT, the broker says so.
        client.will_set(self.state_topic, offline_payload(self._gateway, reason="lost"),
                        qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_register_write = _network_thread_writes
        return client

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: ReasonCode, properties: object) -> None:
        with self._guard:
            if client is not self._client:
                return
            if reason.is_failure:
                self.stats.last_error = f"broker refused the connection: {reason}"
                self._lost.set()
            else:
                # paho does not enforce the broker's Receive Maximum (MQTT 5); our window does.
                self._receive_max = int(getattr(properties, "ReceiveMaximum", RECEIVE_MAX_DEFAULT))
                self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: ReasonCode, properties: object) -> None:
        self._end(client, f"disconnected: {reason}")

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason: ReasonCode, properties: object) -> None:
        with self._guard:
            if client is not self._client:
                return  # a retired client's mid could collide with one of the current client
            self._events.append((mid, not reason.is_failure, str(reason)))
        self._wake.set()

    def _end(self, client: mqtt.Client, error: str | None) -> None:
        """``client``'s connection is over (if it is still the current one)."""
        with self._guard:
            if client is not self._client:
                return
            if error is not None:
                self.stats.last_error = error
            self._lost.set()
        self._wake.set()

    def _run_network(self, client: mqtt.Client) -> None:
        """The connection's network thread: connect, then read and write until the link ends."""
        error = None
        try:
            # What loop_forever(retry_first_connection=False) does with reconnect_on_failure
            # off, but through the public ``loop``, which also makes paho's wake-up socket
            # pair: with ``_network_thread_writes`` registered, a publish from the agent loop
            # only queues and wakes this select, so only this thread writes (see there).
            client.reconnect()
            while client.loop(timeout=1.0) == mqtt.MQTT_ERR_SUCCESS:
                pass
        except Exception as exc:  # the TCP connect or TLS handshake failed (OSError), or worse
            error = f"cannot connect to {self.config.host}:{self.config.port}: {exc}"
            if client is self._client:
                log.warning("%s", error, exc_info=not isinstance(exc, OSError))
        self._end(client, error)  # however the loop ended, this connection is over

    @property
    def connected(self) -> bool:
        return (self._client is not None and self._connected.is_set() and not self._lost.is_set()
                and self._announced)

    def _retire(self, client: mqtt.Client, wait_s: float = 0.0) -> None:
        """Detach and stop an old client. It winds down in its own thread, so the agent loop never
        waits on it (it may sit in a blocking connect for up to paho's connect timeout)."""
        client.on_disconnect = client.on_publish = client.on_connect = None
        client.disconnect()  # the network thread writes what is queued, then DISCONNECT, and ends
        thread, self._network = self._network, None
        if thread is not None and wait_s > 0:
            thread.join(wait_s)

    def _retry_later(self) -> None:
        delay = self._backoff * random.uniform(0.5, 1.0)  # jitter spreads a fleet's reconnects
        self._next_attempt = time.monotonic() + delay
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _teardown(self, verdicts: Verdicts, wait_s: float = 0.0) -> None:
        with self._guard:  # from here on, the old client's callbacks change nothing
            client, self._client = self._client, None
        if client is not None:
            self._retire(client, wait_s)
        self._collect(verdicts)
        # Unacknowledged envelopes go back to the buffer; the next connection sends them again.
        verdicts.rejected.extend(self._inflight.values())
        self._inflight.clear()
        verdicts.uncopied.extend(self._copies.values())
        self._copies.clear()
        self._side.clear()
        self._events.clear()
        self._connected.clear()
        self._lost.clear()
        self._announced = False
        self._receive_max = RECEIVE_MAX_DEFAULT
        self.stats.disconnects += 1
        self._retry_later()

    def _collect(self, verdicts: Verdicts) -> None:
        while self._events:
            mid, ok, reason = self._events.popleft()
            side = self._side.pop(mid, None)
            if side is not None:
                if not ok:
                    log.warning("the broker refused the %s message: %s", side, reason)
                continue
            copy = self._copies.pop(mid, None)
            if copy is not None:
                (verdicts.copied if ok else verdicts.uncopied).append(copy)
                continue
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
            if self._connected.is_set() and not self._announced:
                self._announce()
            self._collect(verdicts)
        return verdicts

    def _announce(self) -> None:
        """The connection is up: say so (retained) before any envelope goes out on it."""
        self._announced = True
        self._backoff = BACKOFF_MIN_S
        self.stats.sessions += 1
        self._publish_side("state", self.state_topic,
                           online_payload(self._gateway, since_ms=self._wall_ms()))

    def _start(self, now: float) -> None:
        self._attempt_started = now
        self.stats.connects += 1
        try:
            client = self._new_client()  # reads the password, CA, certificate and key files
        except (OSError, ValueError) as exc:
            self.stats.last_error = f"cannot set up the connection: {exc}"
            log.warning("%s", self.stats.last_error)
            self._retry_later()
            return
        with self._guard:
            self._client = client
        try:
            client.connect_async(self.config.host, self.config.port,
                                 paho_keepalive(self.config.keepalive_s), clean_start=True)
        except (OSError, ValueError) as exc:
            self.stats.last_error = f"cannot start connecting: {exc}"
            self._lost.set()
            return
        self._network = threading.Thread(target=self._run_network, args=(client,),
                                         name="mqtt network", daemon=True)
        self._network.start()

    # -- publishing ------------------------------------------------------------------------------
    @property
    def window(self) -> int:
        """How many more envelopes may be published before the oldest is acknowledged (one_way:
        written to the socket); first sends and copies share it."""
        return self._data_cap - len(self._inflight) - len(self._copies) if self.connected else 0

    @property
    def _data_cap(self) -> int:
        if self.config.one_way:
            return self.config.inflight  # QoS 0: the broker's Receive Maximum does not apply
        # Everything we have unacknowledged, side messages included, must stay within the
        # broker's Receive Maximum. When that, not `inflight`, is the limit, SIDE_SLOTS of it are
        # kept for the state and status messages, so they never wait for or delay an envelope.
        return min(self.config.inflight, max(1, self._receive_max - SIDE_SLOTS))

    @property
    def _side_room(self) -> bool:
        if self.config.one_way:
            return True  # QoS 0: no Receive Maximum; each kind has one message at a time anyway
        return len(self._inflight) + len(self._side) < self._receive_max

    def publish(self, sealed: Sealed, *, copy: bool = False) -> bool:
        """Publish one envelope (QoS 1, or 0 in one_way mode); False if the client refused it
        (it stays in the buffer). ``copy``: a redundant resend of one already sent (one_way)."""
        if self._client is None or not self.connected:
            return False
        info = self._client.publish(self.topic, sealed.token.encode("ascii"), qos=self._qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.stats.last_error = f"publish refused: {mqtt.error_string(info.rc)}"
            self._lost.set()
            return False
        if copy:
            self._copies[info.mid] = sealed.seq
            self.stats.copies += 1
        else:
            self._inflight[info.mid] = sealed.seq
            self.stats.published += 1
        return True

    @property
    def idle(self) -> bool:
        """Nothing published on this connection is still waiting to be acked (one_way: written)."""
        return not (self._inflight or self._copies or self._side)

    @property
    def checkpoint_ready(self) -> bool:
        return self.connected and "checkpoint" not in self._side.values()

    def publish_checkpoint(self, token: str) -> bool:
        """Publish a signed checkpoint, not retained, outside the window; False (and nothing
        queued) if it cannot go now."""
        if not (self.checkpoint_ready and self._publish_side(
                "checkpoint", self.checkpoint_topic, token.encode("ascii"), retain=False)):
            return False
        self.stats.checkpoints += 1
        return True

    def _publish_side(self, kind: str, topic: str, payload: bytes, *, retain: bool = True) -> bool:
        """A message outside the window (paho has SIDE_SLOTS extra for them), retained unless
        said otherwise; QoS 1, or 0 in one_way mode."""
        if self._client is None or not self._side_room:
            return False
        info = self._client.publish(topic, payload, qos=self._qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        self._side[info.mid] = kind
        return True

    # -- what agent.health uses (StatusLink) ----------------------------------------------------
    @property
    def gateway(self) -> str:
        return self._gateway

    @property
    def sessions(self) -> int:
        return self.stats.sessions

    @property
    def connect_attempts(self) -> int:
        return self.stats.connects

    @property
    def status_ready(self) -> bool:
        return self.connected and "status" not in self._side.values()

    def publish_status(self, payload: bytes) -> bool:
        """Publish a health status, retained; False (and nothing queued) if it cannot go now."""
        return self.status_ready and self._publish_side("status", self.status_topic, payload)

    def close(self) -> Verdicts:
        """Say ``offline`` (a clean DISCONNECT discards the Will) and disconnect."""
        verdicts = Verdicts()
        if self._client is not None:
            self._collect(verdicts)
            if self.connected:
                self._publish_side("state", self.state_topic, offline_payload(
                    self._gateway, reason="stopped", since_ms=self._wall_ms()))
            self._teardown(verdicts, wait_s=CLOSE_WAIT_S)
        return verdicts
