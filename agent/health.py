"""What the gateway says about itself on MQTT: whether it is connected, and how it is doing.

Two retained topics next to the batches, both QoS 1 (agent/outputs/mqtt/README.md shows the JSON):

* ``<prefix>/<gateway>/state``: ``online`` when a connection is up; ``offline`` from the Last Will,
  which the broker publishes when the link dies, or from the agent when it stops cleanly (a clean
  DISCONNECT discards the Will, so the agent says it itself).
* ``<prefix>/<gateway>/status``: every ``status_every_s`` and after each (re)connect, a snapshot:
  buffer depth, age of the oldest unsent reading, bus errors per line, clock state, epoch,
  version, uptime.

Both describe *now*, so neither is ever buffered: while the link is down nothing is published, and
the first status after a reconnect replaces the stale one. They are not signed, on purpose. They
are operational hints for dashboards and alarms, never evidence: completeness is proven by the
signed envelopes' seq numbers and hash chain, which a forged status cannot change. A forged
"online" or buffer depth can only mislead a dashboard, and the broker's ACL (the gateway's own
topics, writable only with its client certificate or login) is what keeps strangers from
publishing them. The Last Will could not be signed usefully anyway: it is fixed at connect time
and published by the broker, so a signature on it would prove nothing about when it was sent.
Signing would also make the envelope key sign a second kind of document, which is one more thing
to get wrong for no evidential gain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agent.buffer import BufferStats
from agent.modbus._stats import MeterStats
from nengtan import __version__

HEALTH_VERSION = 1


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def online_payload(gateway: str, *, since_ms: int) -> bytes:
    """The retained state published right after a connection comes up."""
    return _dumps({"v": HEALTH_VERSION, "gw": gateway, "state": "online", "since": since_ms,
                   "agent_version": __version__})


def offline_payload(gateway: str, *, reason: str, since_ms: int | None = None) -> bytes:
    """The retained ``offline`` state: ``reason`` "lost" is the Last Will, which carries no time
    (the broker publishes it, long after it was written); "stopped" is the agent's own goodbye."""
    doc: dict[str, Any] = {"v": HEALTH_VERSION, "gw": gateway, "state": "offline", "reason": reason}
    if since_ms is not None:
        doc["since"] = since_ms
    return _dumps(doc)


def bus_errors(buses: Mapping[str, Mapping[str, MeterStats]]) -> dict[str, int]:
    """Failed requests per line since the agent started: silent + garbled + exception replies."""
    return {line: sum(s.silent + s.garbled + s.exceptions for s in meters.values())
            for line, meters in buses.items()}


@dataclass(frozen=True)
class HealthSnapshot:
    """What the agent loop knows at one instant; ``taken_ms`` is the wall clock then."""

    buffer: BufferStats
    bus_errors: Mapping[str, int]
    clock_synced: bool
    taken_ms: int


def snapshot(buffer: BufferStats, buses: Mapping[str, Mapping[str, MeterStats]], *,
             clock_synced: bool, now_ms: int | None = None) -> HealthSnapshot:
    return HealthSnapshot(buffer, bus_errors(buses), clock_synced,
                          int(time.time() * 1000) if now_ms is None else now_ms)


def status_document(snap: HealthSnapshot, *, gateway: str, uptime_s: float, sessions: int,
                    attempts: int) -> dict[str, Any]:
    b = snap.buffer
    oldest_age = None
    if b.oldest_unsent_ms is not None:
        # Wall-clock ages: after the clock is first synced, an old cycle stamped in 1970 would
        # look decades old; never negative, at least (a clock stepped backwards).
        oldest_age = round(max(0, snap.taken_ms - b.oldest_unsent_ms) / 1000, 1)
    return {
        "v": HEALTH_VERSION,
        "gw": gateway,
        "at": snap.taken_ms,
        "agent_version": __version__,
        "uptime_s": int(uptime_s),
        "epoch": b.epoch,
        "last_seq": b.last_seq,
        "clock_synced": snap.clock_synced,
        "buffer": {"unsent_cycles": b.unsent_cycles, "unsent_readings": b.unsent_readings,
                   "oldest_unsent_age_s": oldest_age},
        "bus_errors": dict(sorted(snap.bus_errors.items())),
        "uplink": {"sessions": sessions, "attempts": attempts},
    }


class StatusLink(Protocol):
    """The part of the uplink the health publisher uses (``MqttUplink`` is one)."""

    @property
    def gateway(self) -> str: ...

    @property
    def sessions(self) -> int: ...  # connections that came up so far

    @property
    def connect_attempts(self) -> int: ...

    @property
    def status_ready(self) -> bool: ...  # connected, and no earlier status still unacknowledged

    def publish_status(self, payload: bytes) -> bool: ...


class HealthPublisher:
    """Publishes the status on a timer and after every new connection, never queueing it.

    The agent loop calls ``tick`` on every step; ``make`` is called only when a status is due,
    so the snapshot (a buffer query) costs nothing in between.
    """

    def __init__(self, link: StatusLink, *, every_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._link, self._every, self._monotonic = link, every_s, monotonic
        self._started = monotonic()
        self._next_due = self._started
        self._published_in = 0  # the session the last status went out in
        self.published = 0

    def due(self) -> bool:
        return (self._monotonic() >= self._next_due
                or self._link.sessions != self._published_in)

    def publish(self, snap: HealthSnapshot) -> bool:
        """Publish ``snap`` now; False if there is no connection (it is dropped, not queued)."""
        doc = status_document(snap, gateway=self._link.gateway,
                              uptime_s=self._monotonic() - self._started,
                              sessions=self._link.sessions, attempts=self._link.connect_attempts)
        if not self._link.publish_status(_dumps(doc)):
            return False
        self._published_in = self._link.sessions
        self._next_due = self._monotonic() + self._every
        self.published += 1
        return True

    def tick(self, make: Callable[[], HealthSnapshot]) -> bool:
        """Publish a fresh snapshot if one is due and the link can take it; True if one went out.
        A status that cannot go out now is skipped, not queued: the next one will say more."""
        return self._link.status_ready and self.due() and self.publish(make())
