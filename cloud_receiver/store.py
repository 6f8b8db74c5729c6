"""What the receiver keeps, and the ``Store`` protocol any backend must honour.

SQLite (``SqliteStore``) is the embedded default, PostgreSQL (``PgStore``) the production one;
one test suite runs on both. Every method is one statement or one transaction, and the ingest
checks run inside ``transaction(lock=gateway)`` so two receivers on a shared subscription cannot
both store the same cycle or both correct the same rollup (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: a transaction-scoped advisory lock on the gateway).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from nengtan.envelope import ClockInfo, Gap


@dataclass(frozen=True)
class EnrolledKey:
    """One enrolled verification key, as the registry and the ``keys`` table hold it."""

    kid: str
    gateway: str
    alg: str
    material: bytes
    enrolled_at: str
    source: str  # the enrollment file it came from, for the audit trail


@dataclass(frozen=True)
class Revocation:
    """``kid`` signs nothing from cycle ``(epoch, seq)`` of its gateway on: an envelope holding
    any cycle at or after that point, or a checkpoint whose ``(epoch, last)`` is, is rejected
    (``revoked_key``). Earlier envelopes stay valid, so a backlog sealed before a rotation still
    lands. ``reason`` is ``rotated`` for a rotation, else what the operator typed."""

    kid: str
    gateway: str
    epoch: int
    seq: int
    reason: str
    at: str  # ISO 8601, when it was recorded
    source: str  # the record file or the operator command it came from


@dataclass(frozen=True)
class KeyEvent:
    """One line of the key audit trail: ``enrolled``, ``rotated`` or ``revoked``."""

    at: str  # ISO 8601
    event: str
    kid: str
    gateway: str
    detail: str
    source: str
    id: int = 0  # assigned by the store


#: Rollup periods and their length. The ingest computes bucket starts: 1d at local midnight in
#: the receiver's time zone, the others at multiples of their length since the Unix epoch.
ROLLUP_PERIODS: dict[str, int] = {"15m": 900_000, "1h": 3_600_000, "1d": 86_400_000}


@dataclass(frozen=True)
class CounterPoint:
    """One good reading of a counter measurement, kept apart from the raw readings so that the
    rollups can find a reading's neighbours in the gateway's sequence order."""

    meter: str
    measurement: str
    epoch: int
    seq: int
    ts_ms: int
    value: float


@dataclass(frozen=True)
class RollupDelta:
    """A change to one rollup bucket: added to what is stored (negative to take back an
    interval that late data has split)."""

    meter: str
    measurement: str
    period: str  # a key of ROLLUP_PERIODS
    start_ms: int
    amount: float  # counter units (kWh for energy)
    intervals: int
    anomalies: int  # intervals whose counter went backwards (their amount counts as 0)
    long_intervals: int  # intervals longer than the period: their amount is not spread


@dataclass(frozen=True)
class Rollup:
    gateway: str
    meter: str
    measurement: str
    period: str
    start_ms: int
    amount: float
    intervals: int
    anomalies: int
    long_intervals: int


@dataclass(frozen=True)
class StoredEnvelope:
    gateway: str
    epoch: int
    seq: int
    last: int
    hash: str
    prev: str | None
    kid: str
    received_ms: int
    token: str


class ReadingRow(NamedTuple):
    """One reading to store. A plain tuple of the same shape will do (``Batch.rows()``)."""

    seq: int  # the cycle's seq; gateway and epoch come from the envelope
    meter: str
    measurement: str
    ts_ms: int
    value: float | None
    quality: str


@dataclass(frozen=True)
class StoredCheckpoint:
    hash: str  # chain-style hash of the checkpoint token: identical resends share it
    gateway: str
    epoch: int
    last: int
    head: str | None
    sealed: int
    clock: ClockInfo | None
    kid: str
    received_ms: int
    token: str
    #: None while no stored envelope covers ``last``; True if the one ending at ``last`` has
    #: hash ``head``; False if what is stored disagrees (a security alert).
    head_ok: bool | None = None


@dataclass(frozen=True)
class Alert:
    """A security alert kept for people to look at (``checkpoint_conflict``)."""

    received_ms: int
    kind: str
    gateway: str
    epoch: int
    detail: str
    id: int = 0  # assigned by the store


#: Lifecycle of an accounting alert: ``open`` → ``acknowledged`` (someone took it) → ``closed``
#: (its condition cleared). A closed alert is history; the condition recurring opens a new one.
ALERT_STATES: tuple[str, ...] = ("open", "acknowledged", "closed")


@dataclass(frozen=True)
class AccountingAlert:
    """An operations alert raised by ``cloud_receiver.accounting.alerts`` (threshold, missing
    data, gateway offline, balance deviation, counter anomaly). At most one per (kind, subject,
    rule) is live (not closed): a condition seen again updates ``last_seen_ms``, ``detail`` and
    ``occurrences`` instead of piling up duplicates."""

    kind: str
    subject: str  # what it concerns: a metering point, a gateway, a balance parent
    rule: str  # the rule's name in the plant directory's alerts.toml
    first_seen_ms: int
    last_seen_ms: int
    detail: str
    state: str = "open"  # one of ALERT_STATES
    occurrences: int = 1
    acked_by: str | None = None
    acked_ms: int | None = None
    closed_ms: int | None = None
    id: int = 0  # assigned by the store


@dataclass(frozen=True)
class MissingRange:
    """Cycles ``first..last`` of one (gateway, epoch) that no stored envelope holds.

    ``status`` is ``declared`` when the gateway's signed gap records cover the range (``reason``
    names theirs, comma-separated if several), else ``missing``: lost, or still on the way.
    """

    first: int
    last: int
    status: str  # "missing" | "declared"
    reason: str | None = None

    @property
    def cycles(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class StreamSummary:
    """What the receiver knows about one (gateway, epoch)."""

    gateway: str
    epoch: int
    envelopes: int  # stored
    stored_last: int  # highest cycle seq stored; 0 if none
    checkpoint_last: int  # highest ``last`` any checkpoint claims; 0 if none
    checkpoint_sealed: int  # ``sealed`` of that checkpoint
    checkpoint_received_ms: int | None
    checkpoints: int
    conflicts: int  # checkpoints whose head disagrees with the stored envelope


@dataclass(frozen=True)
class QuarantineItem:
    received_ms: int
    topic: str
    reason: str
    detail: str
    payload: bytes
    id: int = 0  # assigned by the store


@dataclass(frozen=True)
class CounterSample:
    """One good reading of an energy counter, for the energy report."""

    gateway: str
    meter: str
    ts_ms: int
    epoch: int
    seq: int
    value: float


class StoreTxn(Protocol):
    """The view of the store inside one ingest transaction."""

    def envelope_starting_at(self, gateway: str, epoch: int, seq: int) -> StoredEnvelope | None:
        """The stored envelope whose first cycle is ``seq``."""

    def envelope_ending_at(self, gateway: str, epoch: int, last: int) -> StoredEnvelope | None:
        """The stored envelope whose last cycle is ``last``."""

    def envelope_overlapping(
        self, gateway: str, epoch: int, seq: int, last: int
    ) -> StoredEnvelope | None:
        """A stored envelope, not starting at ``seq``, that covers any cycle of ``seq..last``."""

    def envelope_covering(self, gateway: str, epoch: int, seq: int) -> StoredEnvelope | None:
        """The stored envelope that holds cycle ``seq``."""

    def add_envelope(self, envelope: StoredEnvelope,
                     readings: Iterable[tuple[int, str, str, int, float | None, str]], *,
                     version: int = 1, clock: ClockInfo | None = None,
                     gaps: Sequence[Gap] = (), synced: bool | None = None) -> int:
        """Insert the envelope, its clock info and sync state, the gaps it declares and its
        readings (rows shaped like ``ReadingRow``); return how many readings were new."""

    def settle_checkpoints(self, envelope: StoredEnvelope) -> list[StoredCheckpoint]:
        """Judge the unjudged checkpoints whose ``last`` falls in the newly stored envelope;
        return those it contradicts (their ``head_ok`` is now False)."""

    def has_checkpoint(self, hash: str) -> bool: ...

    def counter_neighbours(
        self, gateway: str, epoch: int, seq: int, last: int,
        series: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], tuple[CounterPoint | None, CounterPoint | None]]:
        """For each (meter, measurement) in ``series``: the stored counter point just before
        ``(epoch, seq)`` and the one just after ``(epoch, last)``, in (epoch, seq) order."""

    def add_counter_points(self, gateway: str, points: Sequence[CounterPoint]) -> None:
        """Store counter points (never one already stored: envelopes do not overlap)."""

    def adjust_rollups(self, gateway: str, deltas: Sequence[RollupDelta]) -> None:
        """Add each delta to its bucket, creating the bucket if needed."""

    def clear_rollups(self, gateway: str) -> None:
        """Delete every rollup bucket of ``gateway`` (before a rebuild)."""

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...

    def add_alert(self, alert: Alert) -> None: ...


class Store(Protocol):
    def close(self) -> None: ...

    def transaction(self, lock: str | None = None) -> AbstractContextManager[StoreTxn]:
        """One atomic unit: committed on normal exit, rolled back if the block raises. With
        ``lock`` (a gateway id), no other transaction holding the same lock runs meanwhile."""

    def add_key(self, key: EnrolledKey, *, event: str = "enrolled", detail: str = "") -> bool:
        """Insert ``key`` unless its kid is stored and log ``event`` in the key audit trail;
        True if it was new. A kid already enrolled for another gateway raises IdentityError."""

    def keys(self) -> list[EnrolledKey]: ...

    def revoke_key(self, revocation: Revocation) -> bool:
        """Record that ``revocation.kid`` signs nothing from its point on, and audit it. A kid
        not enrolled (or enrolled for another gateway) raises IdentityError. Safe to re-run:
        an earlier point is kept over a later one; False if nothing changed."""

    def revocations(self) -> list[Revocation]: ...

    def key_events(self, *, limit: int = 1000) -> list[KeyEvent]:
        """The key audit trail, oldest first."""

    def rollups(self, period: str, *, gateway: str | None = None, meter: str | None = None,
                measurement: str | None = None, start_ms: int | None = None,
                end_ms: int | None = None) -> list[Rollup]:
        """Buckets of ``period`` with ``start_ms`` in ``[start_ms, end_ms)``, ordered by
        gateway, meter, measurement, start. Empty buckets are absent."""

    def counter_points(self, gateway: str, meter: str,
                       measurement: str) -> list[CounterPoint]:
        """Every stored counter point of one series in (epoch, seq) order (audits, tests)."""

    def add_quarantine(self, item: QuarantineItem) -> int:
        """Keep a rejected message with its raw bytes; return its id."""

    def quarantined(self, *, limit: int, reason: str | None = None) -> list[QuarantineItem]: ...

    def quarantine_counts(self) -> dict[str, int]: ...

    def bump_counter(self, name: str, by: int = 1) -> None: ...

    def counters(self) -> dict[str, int]: ...

    def counter_samples(self, measurement: str) -> Iterator[CounterSample]:
        """Good readings of ``measurement`` ordered by gateway, meter, ts_ms, epoch, seq."""

    def stats(self) -> dict[str, int]:
        """Row counts per table, for status output and tests."""

    def streams(self, gateway: str | None = None) -> list[StreamSummary]:
        """Every (gateway, epoch) with stored envelopes, gaps or checkpoints, in order."""

    def missing_ranges(self, gateway: str, epoch: int) -> list[MissingRange]:
        """The cycle ranges from 1 up to the higher of the highest stored ``last`` and the
        highest checkpoint ``last`` that no stored envelope holds, ascending, each marked
        ``declared`` (covered by gap records, with their reason) or ``missing``."""

    def gaps(self, gateway: str, epoch: int) -> list[Gap]:
        """The gap records the gateway declared for this epoch."""

    def alerts(self, *, limit: int) -> list[Alert]:
        """Security alerts, newest first."""

    def raise_accounting_alert(self, kind: str, subject: str, rule: str, at_ms: int,
                               detail: str) -> AccountingAlert:
        """Open an alert, or update the live one of (kind, subject, rule): last seen, detail,
        occurrences + 1, state kept (an acknowledgement stands while the condition lasts)."""

    def close_accounting_alert(self, id: int, at_ms: int) -> bool:
        """Close a live alert (its condition cleared); False if it was closed or is unknown."""

    def ack_accounting_alert(self, id: int, by: str, at_ms: int) -> AccountingAlert:
        """Acknowledge an open alert and return it; an acknowledged one is returned unchanged
        (the first acknowledgement stands). StoreError if there is no such alert or it is
        closed."""

    def accounting_alerts(self, *, state: str | None = None, kind: str | None = None,
                          limit: int = 100) -> list[AccountingAlert]:
        """Accounting alerts, newest first; ``state`` ``live`` means open or acknowledged."""

    def gateway_last_seen(self) -> dict[str, int]:
        """Per gateway, when its newest stored envelope was received (Unix ms)."""


def classify_holes(holes: Iterable[tuple[int, int]], gaps: Iterable[Gap]) -> list[MissingRange]:
    """Split each hole (``first..last`` held by no stored envelope) into ``declared`` parts,
    covered by gap records, and ``missing`` parts; adjacent parts alike are merged. Shared by
    every backend: it only needs the holes, which a backend finds with one query."""
    gaps = sorted(gaps, key=lambda g: (g.first, g.last))
    out: list[MissingRange] = []
    for first, last in sorted(holes):
        inside = [g for g in gaps if g.first <= last and g.last >= first]
        cuts = sorted({first, last + 1} | {max(g.first, first) for g in inside}
                      | {min(g.last, last) + 1 for g in inside})
        for start, stop in zip(cuts, cuts[1:]):
            reasons = sorted({g.reason for g in inside if g.first <= start <= g.last})
            part = MissingRange(start, stop - 1, "declared" if reasons else "missing",
                                ",".join(reasons) or None)
            if (out and out[-1].last + 1 == part.first
                    and (out[-1].status, out[-1].reason) == (part.status, part.reason)):
                part = MissingRange(out[-1].first, part.last, part.status, part.reason)
                out.pop()
            out.append(part)
    return out


#: URL schemes that select the PostgreSQL backend; anything else is a SQLite path.
PG_SCHEMES = ("postgresql://", "postgres://")


def open_store(location: Path | str, *, create: bool = True) -> Store:
    """Open the store at ``location`` and apply migrations: a ``postgresql://`` (or
    ``postgres://``) URL opens PostgreSQL, anything else is a SQLite file (``":memory:"`` for
    tests).

    With ``create=False`` a missing database (SQLite: no file; PostgreSQL: no receiver tables
    in the schema) is a StoreError, so read-only commands such as ``report`` do not leave an
    empty database behind on a typo.
    """
    if isinstance(location, str) and location.startswith(PG_SCHEMES):
        from cloud_receiver._pg_store import PgStore

        return PgStore(location, create=create)
    from cloud_receiver._sqlite_store import SqliteStore

    return SqliteStore(location, create=create)
