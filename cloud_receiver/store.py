"""What the receiver keeps, and the ``Store`` protocol any backend must honour.

SQLite (``SqliteStore``) is the embedded default. The protocol is small on purpose so a
PostgreSQL backend can follow: every method is one statement or one transaction, and the ingest
checks run inside ``transaction()`` so two receivers on a shared subscription cannot both store
the same cycle (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL would use ``SELECT … FOR UPDATE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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


@dataclass(frozen=True)
class ReadingRow:
    seq: int  # the cycle's seq; gateway and epoch come from the envelope
    meter: str
    measurement: str
    ts_ms: int
    value: float | None
    quality: str


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

    def add_envelope(self, envelope: StoredEnvelope, readings: Iterable[ReadingRow]) -> int:
        """Insert the envelope and its readings; return how many readings were new."""


class Store(Protocol):
    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[StoreTxn]:
        """One atomic unit: committed on normal exit, rolled back if the block raises."""

    def add_key(self, key: EnrolledKey) -> bool:
        """Insert ``key`` unless its kid is stored; True if it was new. A kid already enrolled
        for another gateway raises IdentityError."""

    def keys(self) -> list[EnrolledKey]: ...

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


def open_store(path: Path | str, *, create: bool = True) -> Store:
    """Open the SQLite store at ``path`` (``":memory:"`` for tests) and apply migrations.

    With ``create=False`` a missing database is a StoreError, so read-only commands such as
    ``report`` do not leave an empty database behind on a typo.
    """
    from cloud_receiver._sqlite_store import SqliteStore

    return SqliteStore(path, create=create)
