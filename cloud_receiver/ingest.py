"""Ingest one MQTT message: verify, check the chain, deduplicate, store or quarantine.

Two kinds of message arrive: batch envelopes on ``<prefix>/<gateway>/batch`` (wire v1 or v2) and
signed checkpoints on ``<prefix>/<gateway>/checkpoint``. ``ingest`` never raises for anything a
sender can put in a message: every rejection is stored in the quarantine with its raw bytes and a
stable reason, and unexpected failures become reason ``internal``. It does raise StoreError when
the database itself cannot be written; then nothing was committed and the caller must not
acknowledge, so the broker delivers the message again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from cloud_receiver.registry import Registry
from cloud_receiver.rollups import apply_batch
from cloud_receiver.store import (
    Alert,
    QuarantineItem,
    Store,
    StoredCheckpoint,
    StoredEnvelope,
    StoreTxn,
)
from nengtan.checkpoint import Checkpoint, open_checkpoint
from nengtan.envelope import Batch, envelope_hash, open_batch
from nengtan.errors import EnvelopeError, StoreError
from nengtan.jws import Compact, VerificationKey

log = logging.getLogger(__name__)

#: Every reason a message can be quarantined for; the first five come from nengtan.envelope.
QUARANTINE_REASONS = (
    "malformed", "unsupported_alg", "unknown_key", "bad_signature", "bad_payload",
    "gateway_mismatch", "topic_mismatch", "revoked_key", "chain_break", "replay_conflict",
    "internal",
)
DUPLICATE_COUNTER = "duplicate"
DUPLICATE_CHECKPOINT_COUNTER = "duplicate_checkpoint"
CHECKPOINT_CONFLICT = "checkpoint_conflict"  # the alert kind
KINDS = ("batch", "checkpoint")  # the last topic level of each kind of message

_T = TypeVar("_T")


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
    seq: int | None = None  # the envelope's first cycle; a checkpoint's ``last``
    readings: int = 0  # readings newly stored
    quarantine_id: int | None = None
    kind: str = "batch"  # or "checkpoint"
    alerts: int = 0  # security alerts this message raised (checkpoint conflicts)


@dataclass(frozen=True)
class _Subject:
    gateway: str
    epoch: int
    seq: int


class _Reject(Exception):
    def __init__(self, reason: str, detail: str, subject: _Subject | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.subject = reason, detail, subject


class _Duplicate(Exception):
    """Raised inside the transaction to leave it without writing anything."""


def _storable(text: str) -> str:
    """A lone surrogate cannot be stored as UTF-8 TEXT; keep it visible as an escape instead."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def topic_gateway(topic: str, prefix: str, kind: str = "batch") -> str | None:
    """The gateway segment of ``<prefix>/<gateway>/<kind>``, or None if the topic has another
    shape."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/")
    return parts[0] if len(parts) == 2 and parts[1] == kind and parts[0] else None


def topic_filters(prefix: str) -> list[str]:
    """What the receiver subscribes to: ``<prefix>/+/batch`` and ``<prefix>/+/checkpoint``."""
    return [f"{prefix.rstrip('/')}/+/{kind}" for kind in KINDS]


class Ingestor:
    """Turns messages into stored envelopes. Use from one thread at a time per instance."""

    def __init__(self, store: Store, registry: Registry, *, topic_prefix: str = "nengtan/v1",
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 timezone: ZoneInfo | None = None) -> None:
        self._store, self._registry = store, registry
        self._prefix, self._clock_ms = topic_prefix, clock_ms
        # Daily rollups start at local midnight in this zone (China has one, without DST).
        self._tz = timezone or ZoneInfo("Asia/Shanghai")

    def ingest(self, topic: str, payload: bytes) -> Outcome:
        received_ms = self._clock_ms()
        topic = _storable(topic)
        checkpoint = topic_gateway(topic, self._prefix, "checkpoint") is not None
        try:
            if checkpoint:
                return self._ingest_checkpoint(topic, payload, received_ms)
            return self._ingest(topic, payload, received_ms)
        except StoreError:
            raise
        except _Reject as rej:
            return self._quarantine(topic, payload, received_ms, rej.reason, rej.detail,
                                    rej.subject, checkpoint)
        except Exception as exc:  # anything else is our bug, but the message is still kept
            log.exception("ingest failed unexpectedly on %s", topic)
            return self._quarantine(topic, payload, received_ms, "internal",
                                    f"{type(exc).__name__}: {exc}", None, checkpoint)

    def _open(self, payload: bytes,
              opener: Callable[[bytes, Mapping[str, VerificationKey]], tuple[_T, Compact]],
              ) -> tuple[_T, str]:
        try:
            opened, compact = opener(payload, self._registry.keys())
        except EnvelopeError as exc:
            # A kid we do not know may belong to a gateway enrolled since the last scan.
            if exc.reason != "unknown_key" or not self._registry.reload_if_due():
                raise _Reject(exc.reason, exc.detail) from exc
            try:
                opened, compact = opener(payload, self._registry.keys())
            except EnvelopeError as again:
                raise _Reject(again.reason, again.detail) from again
        return opened, compact.kid

    def _check_sender(self, kid: str, gateway: str, topic: str, kind: str,
                      subject: _Subject, reaches: int) -> None:
        """``reaches`` is the highest cycle the message vouches for (an envelope's ``last``, a
        checkpoint's ``last``), which a revocation point is compared with."""
        owner = self._registry.gateway_of(kid)
        if owner != gateway:
            raise _Reject("gateway_mismatch", f"key {kid} is enrolled for gateway {owner!r}, "
                          f"but the {kind} says {gateway!r}", subject)
        revoked = self._registry.revoked_from(kid)
        if revoked is not None and (subject.epoch, reaches) >= revoked:
            raise _Reject("revoked_key", f"key {kid} is revoked from epoch {revoked[0]} seq "
                          f"{revoked[1]} on; this {kind} reaches epoch {subject.epoch} seq "
                          f"{reaches}", subject)
        if topic_gateway(topic, self._prefix, kind) != gateway:
            raise _Reject("topic_mismatch", f"topic {topic!r} does not match "
                          f"{self._prefix}/{gateway}/{kind}", subject)

    def _ingest(self, topic: str, payload: bytes, received_ms: int) -> Outcome:
        batch, kid = self._open(payload, open_batch)
        subject = _Subject(batch.gateway, batch.epoch, batch.seq)
        self._check_sender(kid, batch.gateway, topic, "batch", subject, batch.last)
        token = payload.decode("ascii")  # open_batch has checked it is ASCII
        row = StoredEnvelope(batch.gateway, batch.epoch, batch.seq, batch.last,
                             envelope_hash(token), batch.prev, kid, received_ms, token)
        try:
            with self._store.transaction(lock=row.gateway) as txn:
                _check_against_stored(txn, row, batch)
                stored = txn.add_envelope(row, batch.rows(), version=batch.version,
                                          clock=batch.clock, gaps=batch.gaps,
                                          synced=batch.time_synced)
                apply_batch(txn, batch, self._tz)
                conflicts = txn.settle_checkpoints(row)
                for cp in conflicts:
                    txn.add_alert(_conflict_alert(received_ms, cp, row))
        except _Duplicate:
            self._store.bump_counter(DUPLICATE_COUNTER)
            log.info("duplicate %s/%d/%d acknowledged again", row.gateway, row.epoch, row.seq)
            return Outcome(Status.DUPLICATE, gateway=row.gateway, epoch=row.epoch, seq=row.seq)
        for cp in conflicts:
            log.error("SECURITY: %s", _conflict_alert(received_ms, cp, row).detail)
        if batch.gaps:
            log.warning("%s/%d declares dropped cycles: %s", row.gateway, row.epoch,
                        ", ".join(f"{g.first}..{g.last} ({g.readings} readings, {g.reason})"
                                  for g in batch.gaps))
        return Outcome(Status.ACCEPTED, gateway=row.gateway, epoch=row.epoch, seq=row.seq,
                       readings=stored, alerts=len(conflicts))

    def _ingest_checkpoint(self, topic: str, payload: bytes, received_ms: int) -> Outcome:
        cp, kid = self._open(payload, open_checkpoint)
        subject = _Subject(cp.gateway, cp.epoch, cp.last)
        self._check_sender(kid, cp.gateway, topic, "checkpoint", subject, cp.last)
        token = payload.decode("ascii")
        row = _stored_checkpoint(cp, envelope_hash(token), kid, received_ms, token)
        alert: Alert | None = None
        try:
            with self._store.transaction(lock=row.gateway) as txn:
                if txn.has_checkpoint(row.hash):
                    raise _Duplicate()
                covering = (txn.envelope_covering(cp.gateway, cp.epoch, cp.last)
                            if cp.last > 0 else None)
                if covering is not None:
                    ok = covering.last == cp.last and covering.hash == cp.head
                    row = replace(row, head_ok=ok)
                    if not ok:
                        alert = _conflict_alert(received_ms, row, covering)
                        txn.add_alert(alert)
                txn.add_checkpoint(row)
        except _Duplicate:
            self._store.bump_counter(DUPLICATE_CHECKPOINT_COUNTER)
            return Outcome(Status.DUPLICATE, gateway=cp.gateway, epoch=cp.epoch, seq=cp.last,
                           kind="checkpoint")
        if alert is not None:
            log.error("SECURITY: %s", alert.detail)
        return Outcome(Status.ACCEPTED, gateway=cp.gateway, epoch=cp.epoch, seq=cp.last,
                       kind="checkpoint", alerts=int(alert is not None))

    def _quarantine(self, topic: str, payload: bytes, received_ms: int, reason: str,
                    detail: str, subject: _Subject | None, checkpoint: bool) -> Outcome:
        qid = self._store.add_quarantine(QuarantineItem(received_ms, topic, reason,
                                                        _storable(detail), bytes(payload)))
        if reason == "replay_conflict":
            log.error("SECURITY: replay conflict on %s (quarantine #%d): %s", topic, qid, detail)
        else:
            log.warning("quarantined #%d from %s: %s: %s", qid, topic, reason, detail)
        return Outcome(Status.QUARANTINED, reason, detail,
                       gateway=subject.gateway if subject else None,
                       epoch=subject.epoch if subject else None,
                       seq=subject.seq if subject else None, quarantine_id=qid,
                       kind="checkpoint" if checkpoint else "batch")


def _stored_checkpoint(cp: Checkpoint, hash_: str, kid: str, received_ms: int,
                       token: str) -> StoredCheckpoint:
    return StoredCheckpoint(hash_, cp.gateway, cp.epoch, cp.last, cp.head, cp.sealed, cp.clock,
                            kid, received_ms, token)


def _conflict_alert(received_ms: int, cp: StoredCheckpoint, stored: StoredEnvelope) -> Alert:
    """The gateway signed a checkpoint naming ``cp.head`` as the envelope ending at ``cp.last``,
    but the stored envelope there is another one: one of the two is not what the gateway
    sealed (a forged or re-sealed batch, or a gateway that lost its store without a new epoch)."""
    return Alert(received_ms, CHECKPOINT_CONFLICT, cp.gateway, cp.epoch,
                 f"checkpoint {cp.gateway}/{cp.epoch} says cycle {cp.last} ends the envelope "
                 f"with hash {cp.head}, but the stored envelope {stored.seq}..{stored.last} "
                 f"hashes to {stored.hash}")


#: The order of the P-256 group.
def _check_against_stored(txn: StoreTxn, row: StoredEnvelope, batch: Batch) -> None:
    """Raise _Duplicate or _Reject if ``row`` cannot be stored next to what is stored."""
    gw, epoch, where = row.gateway, row.epoch, f"{row.gateway}/{row.epoch}/{row.seq}"
    subject = _Subject(batch.gateway, batch.epoch, batch.seq)
    same = txn.envelope_starting_at(gw, epoch, row.seq)
    if same is not None:
        if same.hash == row.hash:
            raise _Duplicate()
        # Resends are byte-identical (the agent stores the sealed bytes), so a second version
        # of the same cycles is a forged, replayed or re-keyed batch: keep the first, alert.
        raise _Reject("replay_conflict", f"{where} is stored with hash {same.hash}; this copy "
                      f"hashes to {row.hash}", subject)
    overlap = txn.envelope_overlapping(gw, epoch, row.seq, row.last)
    if overlap is not None:
        raise _Reject("replay_conflict", f"cycles {row.seq}..{row.last} overlap the stored "
                      f"envelope {overlap.seq}..{overlap.last}", subject)
    if row.seq == 1 and row.prev is not None:
        raise _Reject("chain_break", f"{where} starts the epoch, so its prev must be null",
                      subject)
    before = txn.envelope_ending_at(gw, epoch, row.seq - 1)
    if before is not None and before.hash != row.prev:
        raise _Reject("chain_break", f"{where} has prev {row.prev}, but the stored envelope "
                      f"{before.seq}..{before.last} hashes to {before.hash}", subject)
    after = txn.envelope_starting_at(gw, epoch, row.last + 1)
    if after is not None and after.prev != row.hash:
        raise _Reject("chain_break", f"{where} hashes to {row.hash}, but the stored envelope "
                      f"{after.seq}..{after.last} has prev {after.prev}", subject)
