"""The SQLite backend of ``Store``: WAL, ``synchronous=FULL``, ``user_version`` migrations."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cloud_receiver.store import (
    CounterSample,
    EnrolledKey,
    QuarantineItem,
    ReadingRow,
    StoredEnvelope,
)
from nengtan.errors import IdentityError, StoreError

# Migration N takes the schema from user_version N-1 to N. Append only; never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE gateways (
        gateway     TEXT PRIMARY KEY,
        enrolled_at TEXT NOT NULL
    );
    CREATE TABLE keys (
        kid         TEXT PRIMARY KEY,
        gateway     TEXT NOT NULL REFERENCES gateways (gateway),
        alg         TEXT NOT NULL,
        material    BLOB NOT NULL,
        enrolled_at TEXT NOT NULL,
        source      TEXT NOT NULL
    );
    CREATE TABLE envelopes (
        gateway     TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        last        INTEGER NOT NULL,
        hash        TEXT NOT NULL,
        prev        TEXT,
        kid         TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        token       TEXT NOT NULL,
        PRIMARY KEY (gateway, epoch, seq)
    );
    CREATE INDEX envelopes_by_last ON envelopes (gateway, epoch, last);
    CREATE TABLE readings (
        gateway     TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        meter       TEXT NOT NULL,
        measurement TEXT NOT NULL,
        ts_ms       INTEGER NOT NULL,
        value       REAL,
        quality     TEXT NOT NULL,
        PRIMARY KEY (gateway, epoch, seq, meter, measurement)
    );
    CREATE INDEX readings_by_series ON readings (measurement, gateway, meter, ts_ms);
    CREATE TABLE quarantine (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        received_ms INTEGER NOT NULL,
        topic       TEXT NOT NULL,
        reason      TEXT NOT NULL,
        detail      TEXT NOT NULL,
        payload     BLOB NOT NULL
    );
    CREATE INDEX quarantine_by_reason ON quarantine (reason);
    CREATE TABLE counters (
        name        TEXT PRIMARY KEY,
        value       INTEGER NOT NULL
    );
    """,
)

_ENVELOPE_COLUMNS = "gateway, epoch, seq, last, hash, prev, kid, received_ms, token"


def _envelope(row: tuple[object, ...] | None) -> StoredEnvelope | None:
    return None if row is None else StoredEnvelope(*row)  # type: ignore[arg-type]


class _Txn:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _one(self, where: str, *args: object) -> StoredEnvelope | None:
        sql = f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE {where} LIMIT 1"
        return _envelope(self._conn.execute(sql, args).fetchone())

    def envelope_starting_at(self, gateway: str, epoch: int, seq: int) -> StoredEnvelope | None:
        return self._one("gateway = ? AND epoch = ? AND seq = ?", gateway, epoch, seq)

    def envelope_ending_at(self, gateway: str, epoch: int, last: int) -> StoredEnvelope | None:
        return self._one("gateway = ? AND epoch = ? AND last = ?", gateway, epoch, last)

    def envelope_overlapping(
        self, gateway: str, epoch: int, seq: int, last: int
    ) -> StoredEnvelope | None:
        return self._one(
            "gateway = ? AND epoch = ? AND seq <= ? AND last >= ? AND seq != ?",
            gateway, epoch, last, seq, seq,
        )

    def add_envelope(self, envelope: StoredEnvelope, readings: Iterable[ReadingRow]) -> int:
        e = envelope
        self._conn.execute(
            f"INSERT INTO envelopes ({_ENVELOPE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.gateway, e.epoch, e.seq, e.last, e.hash, e.prev, e.kid, e.received_ms, e.token),
        )
        before = self._conn.total_changes
        self._conn.executemany(
            "INSERT INTO readings (gateway, epoch, seq, meter, measurement, ts_ms, value, quality)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            ((e.gateway, e.epoch, r.seq, r.meter, r.measurement, r.ts_ms, r.value, r.quality)
             for r in readings),
        )
        return self._conn.total_changes - before


class SqliteStore:
    """``Store`` on one SQLite file. Safe to share between threads: one lock serialises use."""

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self._path = str(path)
        if not create and self._path != ":memory:" and not Path(self._path).is_file():
            raise StoreError(f"there is no receiver database at {self._path}; "
                             "start `nengtan receiver run` first or fix [storage] path")
        self._lock = threading.RLock()
        try:
            # Autocommit mode: every transaction below is explicit, so its extent is visible.
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL syncs the WAL at every commit: an acknowledged envelope survives a power cut.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            # The CLI (enroll, report) may use the file while the service writes to it.
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the receiver database {self._path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._atomic() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise StoreError(f"{self._path} has schema version {version}, newer than this "
                                 f"receiver ({len(MIGRATIONS)}); upgrade the receiver")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                # Not executescript(): it would commit first and split the migration from
                # its user_version bump. Our scripts hold no ';' inside strings.
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def _atomic(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            # IMMEDIATE takes the write lock up front, so the checks and the insert of one
            # ingest see the same database even with a second writer process.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                # SQLite may already have rolled back by itself (disk full, I/O error).
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[_Txn]:
        try:
            with self._atomic() as conn:
                yield _Txn(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"receiver database {self._path}: {exc}") from exc

    def _read(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"receiver database {self._path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add_key(self, key: EnrolledKey) -> bool:
        with self.transaction():
            conn = self._conn
            row = conn.execute("SELECT gateway FROM keys WHERE kid = ?", (key.kid,)).fetchone()
            if row is not None:
                if row[0] != key.gateway:
                    raise IdentityError(f"{key.source}: key {key.kid} is already enrolled for "
                                        f"gateway {row[0]!r}, not {key.gateway!r}")
                return False
            conn.execute("INSERT INTO gateways VALUES (?, ?) ON CONFLICT DO NOTHING",
                         (key.gateway, key.enrolled_at))
            conn.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?)",
                         (key.kid, key.gateway, key.alg, key.material, key.enrolled_at, key.source))
            return True

    def keys(self) -> list[EnrolledKey]:
        rows = self._read("SELECT kid, gateway, alg, material, enrolled_at, source FROM keys")
        return [EnrolledKey(*row) for row in rows]  # type: ignore[arg-type]

    def add_quarantine(self, item: QuarantineItem) -> int:
        with self.transaction():
            cursor = self._conn.execute(
                "INSERT INTO quarantine (received_ms, topic, reason, detail, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                (item.received_ms, item.topic, item.reason, item.detail, item.payload),
            )
            return int(cursor.lastrowid or 0)

    def quarantined(self, *, limit: int, reason: str | None = None) -> list[QuarantineItem]:
        where, args = ("WHERE reason = ?", (reason,)) if reason else ("", ())
        rows = self._read(
            "SELECT received_ms, topic, reason, detail, payload, id FROM quarantine "
            f"{where} ORDER BY id DESC LIMIT ?", *args, limit,
        )
        return [QuarantineItem(*row) for row in rows]  # type: ignore[arg-type]

    def quarantine_counts(self) -> dict[str, int]:
        rows = self._read("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason")
        return {str(reason): int(str(n)) for reason, n in rows}

    def bump_counter(self, name: str, by: int = 1) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO counters VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (name, by),
            )

    def counters(self) -> dict[str, int]:
        return {str(k): int(str(v)) for k, v in self._read("SELECT name, value FROM counters")}

    def counter_samples(self, measurement: str) -> Iterator[CounterSample]:
        rows = self._read(
            "SELECT gateway, meter, ts_ms, epoch, seq, value FROM readings"
            " WHERE measurement = ? AND quality = 'good' AND value IS NOT NULL"
            " ORDER BY gateway, meter, ts_ms, epoch, seq", measurement,
        )
        return (CounterSample(*row) for row in rows)  # type: ignore[arg-type]

    def stats(self) -> dict[str, int]:
        tables = ("gateways", "keys", "envelopes", "readings", "quarantine")
        return {t: int(str(self._read(f"SELECT COUNT(*) FROM {t}")[0][0])) for t in tables}
