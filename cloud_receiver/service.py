"""The MQTT side: a persistent-session QoS 1 subscriber that acknowledges only after commit.

Why a persistent session: the broker then queues envelopes while the receiver is down (within its
``max_queued_messages``; see reliability.md §2.3) instead of dropping them. Why manual acks: a
PUBACK sent before our commit would let a crash lose an envelope the broker has forgotten. If the
database cannot be written we send no ack and drop the connection; on reconnect the broker
redelivers every unacknowledged message, and the idempotent ingest absorbs any duplicates.
It subscribes to ``<prefix>/+/batch`` (envelopes) and ``<prefix>/+/checkpoint`` (checkpoints),
through ``$share/<group>/`` when ``[mqtt] share_group`` is set: then several receivers, each with
its own fixed client_id, split the messages between them (docs/receiver.md, "Running several
receivers"). The transactions' gateway lock keeps their chain checks and rollups consistent.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_receiver.broker_auth import secure
from cloud_receiver.config import MqttConfig, ReceiverConfig
from cloud_receiver.ingest import Ingestor, topic_filters
from cloud_receiver.registry import Registry
from cloud_receiver.rollups import STALE_COUNTER, rebuild_all
from cloud_receiver.store import open_store
from nengtan.errors import ConfigError, IdentityError

if TYPE_CHECKING:
    from cloud_receiver.alert_runner import AlertRunner

log = logging.getLogger(__name__)

QOS = 1
RECONNECT_DELAY_S = (1, 60)  # paho doubles the wait from the first to the second value
POLL_S = 0.2
#: How stale the registry's keys and revocations may be when a message is checked: a key
#: revoked with the CLI (another process, or another receiver) takes effect within this.
REGISTRY_REFRESH_S = 10.0


class _SocketGoneIsNotAnError(logging.Filter):
    """paho 2.2 runs its network loop once more after it has closed the socket of a disconnect
    we asked for, and logs "Client is not connected" at ERROR. Here that is the normal end of a
    connection (a stop, or a dropped connection after a failed write, both logged by us), so it
    is demoted to DEBUG rather than alarm whoever reads the journal."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno == logging.ERROR
                and str(record.msg).startswith("Client is not connected")):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_PAHO_LOG = logging.getLogger("cloud_receiver.paho")
_PAHO_LOG.addFilter(_SocketGoneIsNotAnError())


def subscription_filters(config: MqttConfig) -> list[str]:
    """The topic filters to subscribe to: shared ones when ``share_group`` is set."""
    filters = topic_filters(config.topic_prefix)
    if config.share_group is None:
        return filters
    return [f"$share/{config.share_group}/{f}" for f in filters]


class Subscriber:
    """The paho callbacks. Kept apart from the client so tests can drive them directly."""

    def __init__(self, ingestor: Ingestor, topic_filter: str | Sequence[str],
                 ready: threading.Event | None = None, *,
                 refresh: Callable[[], None] | None = None,
                 refresh_every_s: float = REGISTRY_REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``refresh`` (``Registry.refresh``) is called before a message when the last call
        is ``refresh_every_s`` old: on paho's thread, the one that uses the store for ingest,
        so a backend needs no locking for it, and an idle receiver does not poll."""
        self._ingestor = ingestor
        self._filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        self._ready = ready
        self._refresh, self._refresh_every_s, self._clock = refresh, refresh_every_s, clock
        self._refreshed = clock()
        #: Set when a message could not be stored; ``run`` then reconnects after a pause.
        self.store_failed = threading.Event()

    def on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                   reason_code: ReasonCode, properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        log.info("connected; broker kept our session: %s", flags.session_present)
        # Subscribing again is harmless when the session survived, and needed when it did not.
        client.subscribe([(f, QOS) for f in self._filters])

    def on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                     reason_codes: list[ReasonCode], properties: Properties | None) -> None:
        failed = [f"{f}: {rc}" for f, rc in zip(self._filters, reason_codes) if rc.is_failure]
        if failed:
            log.error("broker refused the subscription to %s", ", ".join(failed))
            return
        log.info("subscribed to %s", ", ".join(self._filters))
        if self._ready is not None:
            self._ready.set()

    def on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from its `except OSError`, so the exception being handled is the
        # cause: refused, unreachable, or a broker certificate that does not verify.
        cause = sys.exc_info()[1]
        log.warning("cannot reach the broker%s; retrying", f" ({cause})" if cause else "")

    def on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                      reason_code: ReasonCode, properties: Properties | None) -> None:
        if self._ready is not None:
            self._ready.clear()
        log.info("disconnected: %s", reason_code)

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # paho lets an exception here end its network loop, so nothing may escape.
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = repr(message._topic)  # brokers check UTF-8, but keep the evidence anyway
        try:
            self._refresh_if_due()
            outcome = self._ingestor.ingest(topic, bytes(message.payload))
        except Exception as exc:  # StoreError, or a bug outside ingest's own net
            log.error("not acknowledging mid %d on %s; the broker redelivers after reconnect: %s",
                      message.mid, topic, exc)
            self.store_failed.set()
            client.disconnect()
            return
        client.ack(message.mid, message.qos)  # only now: the outcome is committed
        log.debug("%s %s: %s %s", topic, message.mid, outcome.status, outcome.reason or "")

    def _refresh_if_due(self) -> None:
        if self._refresh is None or self._clock() - self._refreshed < self._refresh_every_s:
            return
        self._refresh()
        self._refreshed = self._clock()


def _client(config: MqttConfig, subscriber: Subscriber) -> mqtt.Client:
    v5 = config.protocol == "5"
    try:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # 3.1.1 has no expiry: clean_session=False keeps the session until the broker drops it.
            clean_session=None if v5 else False,
            manual_ack=True,
        )
    except ValueError as exc:
        raise ConfigError("[mqtt]", [f"At 'mqtt': {exc}"]) from exc
    client.enable_logger(_PAHO_LOG)
    secure(client, config)  # reads the password, CA, certificate and key files
    client.reconnect_delay_set(*RECONNECT_DELAY_S)
    client.on_connect = subscriber.on_connect
    client.on_subscribe = subscriber.on_subscribe
    client.on_connect_fail = subscriber.on_connect_fail
    client.on_disconnect = subscriber.on_disconnect
    client.on_message = subscriber.on_message
    return client


def _connect(client: mqtt.Client, config: MqttConfig) -> None:
    if config.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = config.session_expiry_s
        client.connect_async(config.host, config.port, config.keepalive_s, clean_start=False,
                             properties=props)
    else:
        client.connect_async(config.host, config.port, config.keepalive_s)
    client.loop_start()  # retries the first connection too, with the reconnect delay


def _session(config: MqttConfig, subscriber: Subscriber, stop_event: threading.Event) -> None:
    """One client, connected (and reconnected by paho) until stop or a failed store write.

    A fresh client each time: paho 2.2 does not close the socket pair of a stopped loop when
    ``loop_start`` is called again, but a discarded client closes its own.
    """
    client = _client(config, subscriber)
    _connect(client, config)
    try:
        while not stop_event.wait(POLL_S) and not subscriber.store_failed.is_set():
            pass
    finally:
        # A normal DISCONNECT keeps the session (MQTT 5: for session_expiry_s). Without a
        # connection, stopping the loop is enough (and paho would log an error otherwise).
        if client.is_connected():
            client.disconnect()
        client.loop_stop()


def run(config: ReceiverConfig, stop_event: threading.Event, *,
        ready: threading.Event | None = None, store_retry_s: float = 5.0) -> None:
    """Receive until ``stop_event`` is set. ``ready`` is set whenever the subscription is in
    place (tests wait on it). Raise NengtanError if the store or registry cannot be opened."""
    if not config.registry_dir.is_dir():
        raise IdentityError(f"the registry directory {config.registry_dir} does not exist; "
                            "create it and put enrollment records in it")
    store = open_store(config.storage)
    alert_runner: AlertRunner | None = None
    try:
        if config.alerts is not None:
            # Only then: the rules pull in the accounting package, which ingest never needs.
            from cloud_receiver.alert_runner import start_alert_runner

            alert_runner = start_alert_runner(config)
        registry = Registry(store, config.registry_dir)
        loaded = registry.reload()
        log.info("registry: %d key(s) enrolled, %d record(s) rejected",
                 len(registry.keys()), len(loaded.errors))
        tz = ZoneInfo(config.carbon.timezone)
        if store.counters().get(STALE_COUNTER):
            log.info("rebuilding rollups of data stored before they existed")
            log.info("rollups rebuilt for %d gateway(s)", rebuild_all(store, tz))
        ingestor = Ingestor(store, registry, topic_prefix=config.mqtt.topic_prefix, timezone=tz)
        subscriber = Subscriber(ingestor, subscription_filters(config.mqtt), ready,
                                refresh=registry.refresh)
        while not stop_event.is_set():
            _session(config.mqtt, subscriber, stop_event)
            if subscriber.store_failed.is_set():
                log.warning("database write failed; reconnecting in %.1f s", store_retry_s)
                stop_event.wait(store_retry_s)
                subscriber.store_failed.clear()
    finally:
        if alert_runner is not None:
            alert_runner.stop()
        store.close()
    log.info("receiver stopped")


def install_signal_handlers(stop_event: threading.Event) -> None:
    """SIGTERM (systemd stop) and SIGINT (Ctrl-C) end ``run`` cleanly. Main thread only."""
    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

