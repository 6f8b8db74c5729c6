"""Ingest one MQTT message: verify, check the chain, deduplicate, store or quarantine.

``ingest`` never raises for anything a sender can put in a message: every rejection is stored in
the quarantine with its raw bytes and a stable reason, and unexpected failures become reason
``internal``. It does raise StoreError when the database itself cannot be written; then nothing
was committed and the caller must not acknowledge, so the broker delivers the message again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cloud_receiver.registry import Registry
from cloud_receiver.store import QuarantineItem, ReadingRow, Store, StoredEnvelope, StoreTxn
from nengtan.envelope import Envelope, envelope_hash, open_envelope
from nengtan.errors import EnvelopeError, StoreError

log = logging.getLogger(__name__)

#: Every reason a message can be quarantined for; the first five come from nengtan.envelope.
QUARANTINE_REASONS = (
    "malformed", "unsupported_alg", "unknown_key", "bad_signature", "bad_payload",
    "gateway_mismatch", "topic_mismatch", "chain_break", "replay_conflict", "internal",
)
DUPLICATE_COUNTER = "duplicate"


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # already stored, byte for byte: acknowledge and move on
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class Outcome:
    status: Status
    reason: str | None = None  # one of QUARANTINE_REASONS when quarantined
    detail: str = ""
    gateway: str | None = None
    epoch: int | None = None
    seq: int | None = None
    readings: int = 0  # readings newly stored
    quarantine_id: int | None = None


class _Reject(Exception):
    def __init__(self, reason: str, detail: str, envelope: Envelope | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.envelope = reason, detail, envelope


class _Duplicate(Exception):
    """Raised inside the transaction to leave it without writing anything."""


def _storable(text: str) -> str:
    """A lone surrogate cannot be stored as UTF-8 TEXT; keep it visible as an escape instead."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def topic_gateway(topic: str, prefix: str) -> str | None:
    """The gateway segment of ``<prefix>/<gateway>/batch``, or None if the topic has another shape."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/")
    return parts[0] if len(parts) == 2 and parts[1] == "batch" and parts[0] else None


class Ingestor:
    """Turns messages into stored envelopes. Use from one thread at a time per instance."""

    def __init__(self, store: Store, registry: Registry, *, topic_prefix: str = "nengtan/v1",
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._store, self._registry = store, registry
        self._prefix, self._clock_ms = topic_prefix, clock_ms

    def ingest(self, topic: str, payload: bytes) -> Outcome:
        received_ms = self._clock_ms()
        topic = _storable(topic)
        try:
            return self._ingest(topic, payload, received_ms)
        except StoreError:
            raise
        except _Reject as rej:
            return self._quarantine(topic, payload, received_ms, rej.reason, rej.detail,
                                    rej.envelope)
        except Exception as exc:  # anything else is our bug, but the message is still kept
            log.exception("ingest failed unexpectedly on %s", topic)
            return self._quarantine(topic, payload, received_ms, "internal",
                                    f"{type(exc).__name__}: {exc}", None)

    def _open(self, payload: bytes) -> tuple[Envelope, str]:
        try:
            envelope, compact = open_envelope(payload, self._registry.keys())
        except EnvelopeError as exc:
            # A kid we do not know may belong to a gateway enrolled since the last scan.
            if exc.reason != "unknown_key" or not self._registry.reload_if_due():
                raise _Reject(exc.reason, exc.detail) from exc
            try:
                envelope, compact = open_envelope(payload, self._registry.keys())
            except EnvelopeError as again:
                raise _Reject(again.reason, again.detail) from again
        return envelope, compact.kid

    def _ingest(self, topic: str, payload: bytes, received_ms: int) -> Outcome:
        envelope, kid = self._open(payload)
        owner = self._registry.gateway_of(kid)
        if owner != envelope.gateway:
            raise _Reject("gateway_mismatch", f"key {kid} is enrolled for gateway {owner!r}, "
                          f"but the envelope says {envelope.gateway!r}", envelope)
        topic_gw = topic_gateway(topic, self._prefix)
        if topic_gw != envelope.gateway:
            raise _Reject("topic_mismatch", f"topic {topic!r} does not match "
                          f"{self._prefix}/{envelope.gateway}/batch", envelope)
        token = payload.decode("ascii")  # open_envelope has checked it is ASCII
        row = StoredEnvelope(envelope.gateway, envelope.epoch, envelope.seq, envelope.last,
                             envelope_hash(token), envelope.prev, kid, received_ms, token)
        readings = [ReadingRow(c.seq, r.meter, r.measurement, r.ts_ms, r.value, r.quality)
                    for c in envelope.cycles for r in c.readings]
        try:
            with self._store.transaction() as txn:
                _check_against_stored(txn, row, envelope)
                stored = txn.add_envelope(row, readings)
        except _Duplicate:
            self._store.bump_counter(DUPLICATE_COUNTER)
            log.info("duplicate %s/%d/%d acknowledged again", row.gateway, row.epoch, row.seq)
            return Outcome(Status.DUPLICATE, gateway=row.gateway, epoch=row.epoch, seq=row.seq)
        return Outcome(Status.ACCEPTED, gateway=row.gateway, epoch=row.epoch, seq=row.seq,
                       readings=stored)

    def _quarantine(self, topic: str, payload: bytes, received_ms: int, reason: str,
                    detail: str, envelope: Envelope | None) -> Outcome:
        qid = self._store.add_quarantine(QuarantineItem(received_ms, topic, reason,
                                                        _storable(detail), bytes(payload)))
        if reason == "replay_conflict":
            log.error("SECURITY: replay conflict on %s (quarantine #%d): %s", topic, qid, detail)
        else:
            log.warning("quarantined #%d from %s: %s: %s", qid, topic, reason, detail)
        return Outcome(Status.QUARANTINED, reason, detail,
                       gateway=envelope.gateway if envelope else None,
                       epoch=envelope.epoch if envelope else None,
                       seq=envelope.seq if envelope else None, quarantine_id=qid)


def _check_against_stored(txn: StoreTxn, row: StoredEnvelope, envelope: Envelope) -> None:
    """Raise _Duplicate or _Reject if ``row`` cannot be stored next to what is stored."""
    gw, epoch, where = row.gateway, row.epoch, f"{row.gateway}/{row.epoch}/{row.seq}"
    same = txn.envelope_starting_at(gw, epoch, row.seq)
    if same is not None:
        if same.hash == row.hash:
            raise _Duplicate()
        # Resends are byte-identical (the agent stores the sealed bytes), so a second version
        # of the same cycles is a forged, replayed or re-keyed batch: keep the first, alert.
        raise _Reject("replay_conflict", f"{where} is stored with hash {same.hash}; this copy "
                      f"hashes to {row.hash}", envelope)
    overlap = txn.envelope_overlapping(gw, epoch, row.seq, row.last)
    if overlap is not None:
        raise _Reject("replay_conflict", f"cycles {row.seq}..{row.last} overlap the stored "
                      f"envelope {overlap.seq}..{overlap.last}", envelope)
    if row.seq == 1 and row.prev is not None:
        raise _Reject("chain_break", f"{where} starts the epoch, so its prev must be null",
                      envelope)
    before = txn.envelope_ending_at(gw, epoch, row.seq - 1)
    if before is not None and before.hash != row.prev:
        raise _Reject("chain_break", f"{where} has prev {row.prev}, but the stored envelope "
                      f"{before.seq}..{before.last} hashes to {before.hash}", envelope)
    after = txn.envelope_starting_at(gw, epoch, row.last + 1)
    if after is not None and after.prev != row.hash:
        raise _Reject("chain_break", f"{where} hashes to {row.hash}, but the stored envelope "
                      f"{after.seq}..{after.last} has prev {after.prev}", envelope)
