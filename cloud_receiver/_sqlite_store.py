"""The SQLite backend of ``Store``: WAL, ``synchronous=FULL``, ``user_version`` migrations."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_receiver.store import (
    ROLLUP_PERIODS,
    AccountingAlert,
    Alert,
    CounterPoint,
    CounterSample,
    EnrolledKey,
    KeyEvent,
    MissingRange,
    QuarantineItem,
    Revocation,
    Rollup,
    RollupDelta,
    StoredCheckpoint,
    StoredEnvelope,
    StreamSummary,
    classify_holes,
)
from nengtan.envelope import ClockInfo, Gap
from nengtan.errors import IdentityError, StoreError
from nengtan.measurements import ROLLED_UP

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
    # 2: wire v2 (clock info per envelope, declared gaps), checkpoints, security alerts; and
    # readings rebuilt for ingest speed: WITHOUT ROWID (one B-tree, the primary key, instead of
    # two) and, instead of an index on every series, a partial one on the counter the energy
    # report reads. The series index took a random insert per series per cycle: 61,000 readings
    # per second and 179 bytes per reading before, 200,000 and 72 bytes after (5,000-reading
    # envelopes, synchronous=FULL).
    """
    CREATE TABLE readings_v2 (
        gateway     TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        meter       TEXT NOT NULL,
        measurement TEXT NOT NULL,
        ts_ms       INTEGER NOT NULL,
        value       REAL,
        quality     TEXT NOT NULL,
        PRIMARY KEY (gateway, epoch, seq, meter, measurement)
    ) WITHOUT ROWID;
    INSERT INTO readings_v2
        SELECT gateway, epoch, seq, meter, measurement, ts_ms, value, quality FROM readings;
    DROP TABLE readings;
    ALTER TABLE readings_v2 RENAME TO readings;
    CREATE INDEX readings_energy_import ON readings (gateway, meter, ts_ms, epoch, seq)
        WHERE measurement = 'active_energy_import';
    ALTER TABLE envelopes ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE envelopes ADD COLUMN boot_id TEXT;
    ALTER TABLE envelopes ADD COLUMN mono_ms INTEGER;
    ALTER TABLE envelopes ADD COLUMN wall_ms INTEGER;
    CREATE TABLE gaps (
        gateway     TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        first       INTEGER NOT NULL,
        last        INTEGER NOT NULL,
        readings    INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        declared_in INTEGER NOT NULL,
        PRIMARY KEY (gateway, epoch, first, last, reason)
    );
    CREATE TABLE checkpoints (
        hash        TEXT PRIMARY KEY,
        gateway     TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        last        INTEGER NOT NULL,
        head        TEXT,
        sealed      INTEGER NOT NULL,
        boot_id     TEXT,
        mono_ms     INTEGER,
        wall_ms     INTEGER,
        kid         TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        token       TEXT NOT NULL,
        head_ok     INTEGER
    );
    CREATE INDEX checkpoints_by_last ON checkpoints (gateway, epoch, last);
    CREATE TABLE alerts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        received_ms INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        gateway     TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        detail      TEXT NOT NULL
    );
    """,
    # 3: whether the gateway's clock was synchronised when the envelope's cycles were taken;
    # readings from unsynced cycles keep their mark so reports can re-time or flag them.
    """
    ALTER TABLE envelopes ADD COLUMN synced INTEGER;
    """,
    # 4: key lifecycle (revocations, audit trail) and rollups. Counter readings are copied into
    # counter_points, keyed in sequence order, so a late envelope finds its neighbours with two
    # seeks; the partial energy index on readings goes (counter_points serves the reports).
    # Rollups of existing data are rebuilt by the receiver on first start (rollups_stale).
    """
    CREATE TABLE revocations (
        kid         TEXT PRIMARY KEY REFERENCES keys (kid),
        gateway     TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        at          TEXT NOT NULL,
        source      TEXT NOT NULL
    );
    CREATE TABLE key_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          TEXT NOT NULL,
        event       TEXT NOT NULL,
        kid         TEXT NOT NULL,
        gateway     TEXT NOT NULL,
        detail      TEXT NOT NULL,
        source      TEXT NOT NULL
    );
    INSERT INTO key_events (at, event, kid, gateway, detail, source)
        SELECT enrolled_at, 'enrolled', kid, gateway, alg || ' (from before the audit trail)',
               source FROM keys ORDER BY enrolled_at;
    CREATE TABLE counter_points (
        gateway     TEXT NOT NULL,
        meter       TEXT NOT NULL,
        measurement TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        ts_ms       INTEGER NOT NULL,
        value       REAL NOT NULL,
        PRIMARY KEY (gateway, meter, measurement, epoch, seq)
    ) WITHOUT ROWID;
    INSERT INTO counter_points
        SELECT gateway, meter, measurement, epoch, seq, ts_ms, value FROM readings
        WHERE quality = 'good' AND value IS NOT NULL AND measurement IN
            ('active_energy_export', 'active_energy_import', 'active_energy_total',
             'reactive_energy_export', 'reactive_energy_import', 'reactive_energy_total');
    DROP INDEX readings_energy_import;
    CREATE TABLE rollups (
        gateway     TEXT NOT NULL,
        meter       TEXT NOT NULL,
        measurement TEXT NOT NULL,
        period      TEXT NOT NULL,
        start_ms    INTEGER NOT NULL,
        amount      REAL NOT NULL,
        intervals   INTEGER NOT NULL,
        anomalies   INTEGER NOT NULL,
        long_intervals INTEGER NOT NULL,
        PRIMARY KEY (gateway, meter, measurement, period, start_ms)
    ) WITHOUT ROWID;
    INSERT INTO counters SELECT 'rollups_stale', 1 WHERE EXISTS (SELECT 1 FROM counter_points)
        ON CONFLICT (name) DO UPDATE SET value = 1;
    """,
    # 5: accounting alerts (threshold, missing data, offline, balance, counter anomaly) with
    # their acknowledgement. The partial unique index keeps one live alert per condition.
    """
    CREATE TABLE accounting_alerts (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        kind          TEXT NOT NULL,
        subject       TEXT NOT NULL,
        rule          TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms  INTEGER NOT NULL,
        detail        TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'closed')),
        occurrences   INTEGER NOT NULL,
        acked_by      TEXT,
        acked_ms      INTEGER,
        closed_ms     INTEGER
    );
    CREATE UNIQUE INDEX accounting_alerts_live ON accounting_alerts (kind, subject, rule)
        WHERE state != 'closed';
    CREATE INDEX accounting_alerts_by_state ON accounting_alerts (state, id);
    """,
)

def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_ENVELOPE_COLUMNS = "gateway, epoch, seq, last, hash, prev, kid, received_ms, token"
_CHECKPOINT_COLUMNS = ("hash, gateway, epoch, last, head, sealed, boot_id, mono_ms, wall_ms, kid,"
                       " received_ms, token, head_ok")


def _envelope(row: tuple[object, ...] | None) -> StoredEnvelope | None:
    return None if row is None else StoredEnvelope(*row)  # type: ignore[arg-type]


def _checkpoint(row: tuple[Any, ...]) -> StoredCheckpoint:
    (hash_, gateway, epoch, last, head, sealed, boot_id, mono_ms, wall_ms, kid, received_ms,
     token, head_ok) = row
    clock = None if boot_id is None else ClockInfo(boot_id, mono_ms, wall_ms)
    return StoredCheckpoint(hash_, gateway, epoch, last, head, sealed, clock, kid, received_ms,
                            token, None if head_ok is None else bool(head_ok))


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

    def envelope_covering(self, gateway: str, epoch: int, seq: int) -> StoredEnvelope | None:
        # Stored envelopes never overlap: the one starting last at or before seq is the only
        # candidate, found on the primary key.
        sql = (f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE gateway = ? AND epoch = ?"
               " AND seq <= ? ORDER BY seq DESC LIMIT 1")
        found = _envelope(self._conn.execute(sql, (gateway, epoch, seq)).fetchone())
        return found if found is not None and found.last >= seq else None

    def add_envelope(self, envelope: StoredEnvelope,
                     readings: Iterable[tuple[int, str, str, int, float | None, str]], *,
                     version: int = 1, clock: ClockInfo | None = None,
                     gaps: Sequence[Gap] = (), synced: bool | None = None) -> int:
        e, c = envelope, clock
        self._conn.execute(
            f"INSERT INTO envelopes ({_ENVELOPE_COLUMNS}, version, boot_id, mono_ms, wall_ms, synced)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.gateway, e.epoch, e.seq, e.last, e.hash, e.prev, e.kid, e.received_ms, e.token,
             version, c and c.boot_id, c and c.mono_ms, c and c.wall_ms,
             None if synced is None else int(synced)),
        )
        if gaps:
            self._conn.executemany(
                "INSERT INTO gaps VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(e.gateway, e.epoch, g.first, g.last, g.readings, g.reason, e.seq) for g in gaps],
            )
        before = self._conn.total_changes
        key = (e.gateway, e.epoch)
        self._conn.executemany(
            "INSERT INTO readings (gateway, epoch, seq, meter, measurement, ts_ms, value, quality)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key + tuple(r) for r in readings),
        )
        return self._conn.total_changes - before

    def settle_checkpoints(self, envelope: StoredEnvelope) -> list[StoredCheckpoint]:
        e = envelope
        rows = self._conn.execute(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE gateway = ? AND epoch = ?"
            " AND last BETWEEN ? AND ? AND head_ok IS NULL", (e.gateway, e.epoch, e.seq, e.last),
        ).fetchall()
        conflicts = []
        for row in rows:
            checkpoint = _checkpoint(row)
            ok = checkpoint.last == e.last and checkpoint.head == e.hash
            self._conn.execute("UPDATE checkpoints SET head_ok = ? WHERE hash = ?",
                               (int(ok), checkpoint.hash))
            if not ok:
                conflicts.append(replace(checkpoint, head_ok=False))
        return conflicts

    def has_checkpoint(self, hash: str) -> bool:
        return self._conn.execute("SELECT 1 FROM checkpoints WHERE hash = ?",
                                  (hash,)).fetchone() is not None

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        c, clock = checkpoint, checkpoint.clock
        self._conn.execute(
            f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?, ?)",
            (c.hash, c.gateway, c.epoch, c.last, c.head, c.sealed, clock and clock.boot_id,
             clock and clock.mono_ms, clock and clock.wall_ms, c.kid, c.received_ms, c.token,
             None if c.head_ok is None else int(c.head_ok)),
        )

    def counter_neighbours(
        self, gateway: str, epoch: int, seq: int, last: int,
        series: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], tuple[CounterPoint | None, CounterPoint | None]]:
        # Row-value comparisons walk the primary key from the envelope's edge: one seek each.
        before_sql = ("SELECT meter, measurement, epoch, seq, ts_ms, value FROM counter_points"
                      " WHERE gateway = ? AND meter = ? AND measurement = ? AND (epoch, seq) < (?, ?)"
                      " ORDER BY epoch DESC, seq DESC LIMIT 1")
        after_sql = ("SELECT meter, measurement, epoch, seq, ts_ms, value FROM counter_points"
                     " WHERE gateway = ? AND meter = ? AND measurement = ? AND (epoch, seq) > (?, ?)"
                     " ORDER BY epoch, seq LIMIT 1")
        out = {}
        for meter, measurement in series:
            before = self._conn.execute(before_sql, (gateway, meter, measurement, epoch,
                                                     seq)).fetchone()
            after = self._conn.execute(after_sql, (gateway, meter, measurement, epoch,
                                                   last)).fetchone()
            out[(meter, measurement)] = (None if before is None else CounterPoint(*before),
                                         None if after is None else CounterPoint(*after))
        return out

    def add_counter_points(self, gateway: str, points: Sequence[CounterPoint]) -> None:
        self._conn.executemany(
            "INSERT INTO counter_points VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(gateway, p.meter, p.measurement, p.epoch, p.seq, p.ts_ms, p.value) for p in points],
        )

    def adjust_rollups(self, gateway: str, deltas: Sequence[RollupDelta]) -> None:
        self._conn.executemany(
            "INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
            " amount = amount + excluded.amount, intervals = intervals + excluded.intervals,"
            " anomalies = anomalies + excluded.anomalies,"
            " long_intervals = long_intervals + excluded.long_intervals",
            [(gateway, d.meter, d.measurement, d.period, d.start_ms, d.amount, d.intervals,
              d.anomalies, d.long_intervals) for d in deltas],
        )

    def clear_rollups(self, gateway: str) -> None:
        self._conn.execute("DELETE FROM rollups WHERE gateway = ?", (gateway,))

    def add_alert(self, alert: Alert) -> None:
        a = alert
        self._conn.execute(
            "INSERT INTO alerts (received_ms, kind, gateway, epoch, detail) VALUES (?, ?, ?, ?, ?)",
            (a.received_ms, a.kind, a.gateway, a.epoch, a.detail),
        )


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
    def transaction(self, lock: str | None = None) -> Iterator[_Txn]:
        # BEGIN IMMEDIATE already serialises every writer, so ``lock`` needs nothing more.
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

    def add_key(self, key: EnrolledKey, *, event: str = "enrolled", detail: str = "") -> bool:
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
            conn.execute("INSERT INTO key_events (at, event, kid, gateway, detail, source)"
                         " VALUES (?, ?, ?, ?, ?, ?)",
                         (_now_iso(), event, key.kid, key.gateway, detail or key.alg, key.source))
            return True

    def keys(self) -> list[EnrolledKey]:
        rows = self._read("SELECT kid, gateway, alg, material, enrolled_at, source FROM keys")
        return [EnrolledKey(*row) for row in rows]  # type: ignore[arg-type]

    def revoke_key(self, revocation: Revocation) -> bool:
        r = revocation
        with self.transaction():
            conn = self._conn
            row = conn.execute("SELECT gateway FROM keys WHERE kid = ?", (r.kid,)).fetchone()
            if row is None or row[0] != r.gateway:
                raise IdentityError(f"{r.source}: key {r.kid} is not enrolled for gateway "
                                    f"{r.gateway!r}" + (f" (it belongs to {row[0]!r})" if row else ""))
            known = conn.execute("SELECT epoch, seq FROM revocations WHERE kid = ?",
                                 (r.kid,)).fetchone()
            if known is not None and tuple(known) <= (r.epoch, r.seq):
                return False
            conn.execute(
                "INSERT INTO revocations VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kid) DO UPDATE"
                " SET epoch = excluded.epoch, seq = excluded.seq, reason = excluded.reason,"
                " at = excluded.at, source = excluded.source",
                (r.kid, r.gateway, r.epoch, r.seq, r.reason, r.at, r.source))
            conn.execute("INSERT INTO key_events (at, event, kid, gateway, detail, source)"
                         " VALUES (?, 'revoked', ?, ?, ?, ?)",
                         (r.at, r.kid, r.gateway,
                          f"from epoch {r.epoch} seq {r.seq}: {r.reason}", r.source))
            return True

    def revocations(self) -> list[Revocation]:
        rows = self._read("SELECT kid, gateway, epoch, seq, reason, at, source FROM revocations"
                          " ORDER BY gateway, kid")
        return [Revocation(*row) for row in rows]  # type: ignore[arg-type]

    def key_events(self, *, limit: int = 1000) -> list[KeyEvent]:
        rows = self._read("SELECT at, event, kid, gateway, detail, source, id FROM key_events"
                          " ORDER BY id LIMIT ?", limit)
        return [KeyEvent(*row) for row in rows]  # type: ignore[arg-type]

    def rollups(self, period: str, *, gateway: str | None = None, meter: str | None = None,
                measurement: str | None = None, start_ms: int | None = None,
                end_ms: int | None = None) -> list[Rollup]:
        if period not in ROLLUP_PERIODS:
            raise StoreError(f"no rollup period {period!r}; use one of "
                             + ", ".join(ROLLUP_PERIODS))
        where, args = ["period = ?"], [period]
        for column, value in (("gateway", gateway), ("meter", meter),
                              ("measurement", measurement)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if start_ms is not None:
            where.append("start_ms >= ?")
            args.append(start_ms)  # type: ignore[arg-type]
        if end_ms is not None:
            where.append("start_ms < ?")
            args.append(end_ms)  # type: ignore[arg-type]
        rows = self._read(
            "SELECT gateway, meter, measurement, period, start_ms, amount, intervals, anomalies,"
            f" long_intervals FROM rollups WHERE {' AND '.join(where)}"
            " ORDER BY gateway, meter, measurement, start_ms", *args)
        return [Rollup(*row) for row in rows]  # type: ignore[arg-type]

    def counter_points(self, gateway: str, meter: str,
                       measurement: str) -> list[CounterPoint]:
        rows = self._read("SELECT meter, measurement, epoch, seq, ts_ms, value FROM counter_points"
                          " WHERE gateway = ? AND meter = ? AND measurement = ?"
                          " ORDER BY epoch, seq", gateway, meter, measurement)
        return [CounterPoint(*row) for row in rows]  # type: ignore[arg-type]

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
        if measurement not in ROLLED_UP:
            return iter(())
        rows = self._read(
            "SELECT gateway, meter, ts_ms, epoch, seq, value FROM counter_points"
            # The gateway's sequence is the true order; its wall clock may have been stepped.
            " WHERE measurement = ? ORDER BY gateway, meter, epoch, seq", measurement,
        )
        return (CounterSample(*row) for row in rows)  # type: ignore[arg-type]

    def stats(self) -> dict[str, int]:
        tables = ("gateways", "keys", "envelopes", "readings", "quarantine", "gaps",
                  "checkpoints", "alerts", "revocations", "key_events", "counter_points",
                  "rollups")
        return {t: int(str(self._read(f"SELECT COUNT(*) FROM {t}")[0][0])) for t in tables}

    def streams(self, gateway: str | None = None) -> list[StreamSummary]:
        where, args = ("WHERE gateway = ?", (gateway,)) if gateway is not None else ("", ())
        rows = self._read(
            "WITH s AS (SELECT gateway, epoch FROM envelopes UNION SELECT gateway, epoch FROM gaps"
            " UNION SELECT gateway, epoch FROM checkpoints)"
            " SELECT s.gateway, s.epoch,"
            " (SELECT COUNT(*) FROM envelopes e WHERE e.gateway = s.gateway AND e.epoch = s.epoch),"
            " (SELECT COALESCE(MAX(last), 0) FROM envelopes e"
            "  WHERE e.gateway = s.gateway AND e.epoch = s.epoch),"
            " (SELECT COUNT(*) FROM checkpoints c WHERE c.gateway = s.gateway AND c.epoch = s.epoch),"
            " (SELECT COUNT(*) FROM checkpoints c WHERE c.gateway = s.gateway AND c.epoch = s.epoch"
            "  AND c.head_ok = 0)"
            f" FROM s {where} ORDER BY s.gateway, s.epoch", *args,
        )
        out = []
        for gw, epoch, envelopes, stored_last, checkpoints, conflicts in rows:
            top = self._read(
                "SELECT last, sealed, received_ms FROM checkpoints WHERE gateway = ? AND epoch = ?"
                " ORDER BY last DESC, sealed DESC, received_ms DESC LIMIT 1", gw, epoch)
            last, sealed, received = top[0] if top else (0, 0, None)
            out.append(StreamSummary(str(gw), int(str(epoch)), int(str(envelopes)),
                                     int(str(stored_last)), int(str(last)), int(str(sealed)),
                                     None if received is None else int(str(received)),
                                     int(str(checkpoints)), int(str(conflicts))))
        return out

    def missing_ranges(self, gateway: str, epoch: int) -> list[MissingRange]:
        # Envelopes never overlap (ingest refuses it), so holes lie between neighbours by seq.
        holes = [(int(str(a)), int(str(b))) for a, b in self._read(
            "SELECT before + 1, seq - 1 FROM (SELECT seq, COALESCE(LAG(last) OVER"
            " (ORDER BY seq), 0) AS before FROM envelopes WHERE gateway = ? AND epoch = ?)"
            " WHERE seq > before + 1", gateway, epoch)]
        stored, claimed = (int(str(v)) for v in self._read(
            "SELECT (SELECT COALESCE(MAX(last), 0) FROM envelopes WHERE gateway = ?1 AND epoch = ?2),"
            " (SELECT COALESCE(MAX(last), 0) FROM checkpoints WHERE gateway = ?1 AND epoch = ?2)",
            gateway, epoch)[0])
        if claimed > stored:
            holes.append((stored + 1, claimed))
        return classify_holes(holes, self.gaps(gateway, epoch))

    def gaps(self, gateway: str, epoch: int) -> list[Gap]:
        rows = self._read("SELECT first, last, readings, reason FROM gaps WHERE gateway = ?"
                          " AND epoch = ? ORDER BY first, last, reason", gateway, epoch)
        return [Gap(*row) for row in rows]  # type: ignore[arg-type]

    def alerts(self, *, limit: int) -> list[Alert]:
        rows = self._read("SELECT received_ms, kind, gateway, epoch, detail, id FROM alerts"
                          " ORDER BY id DESC LIMIT ?", limit)
        return [Alert(*row) for row in rows]  # type: ignore[arg-type]

    _ACC_COLUMNS = ("kind, subject, rule, first_seen_ms, last_seen_ms, detail, state, occurrences,"
                    " acked_by, acked_ms, closed_ms, id")

    def _accounting_alert(self, where: str, *args: object) -> AccountingAlert | None:
        rows = self._conn.execute(f"SELECT {self._ACC_COLUMNS} FROM accounting_alerts WHERE {where}",
                                  args).fetchall()
        return AccountingAlert(*rows[0]) if rows else None

    def raise_accounting_alert(self, kind: str, subject: str, rule: str, at_ms: int,
                               detail: str) -> AccountingAlert:
        with self.transaction():
            live = self._accounting_alert("kind = ? AND subject = ? AND rule = ? AND state != 'closed'",
                                          kind, subject, rule)
            if live is None:
                self._conn.execute(
                    "INSERT INTO accounting_alerts (kind, subject, rule, first_seen_ms, last_seen_ms,"
                    " detail, state, occurrences) VALUES (?, ?, ?, ?, ?, ?, 'open', 1)",
                    (kind, subject, rule, at_ms, at_ms, detail))
                found = self._accounting_alert("id = last_insert_rowid()")
            else:
                self._conn.execute(
                    "UPDATE accounting_alerts SET last_seen_ms = MAX(last_seen_ms, ?), detail = ?,"
                    " occurrences = occurrences + 1 WHERE id = ?", (at_ms, detail, live.id))
                found = self._accounting_alert("id = ?", live.id)
            assert found is not None
            return found

    def close_accounting_alert(self, id: int, at_ms: int) -> bool:
        with self.transaction():
            cursor = self._conn.execute("UPDATE accounting_alerts SET state = 'closed', closed_ms = ?"
                                        " WHERE id = ? AND state != 'closed'", (at_ms, id))
            return cursor.rowcount == 1

    def ack_accounting_alert(self, id: int, by: str, at_ms: int) -> AccountingAlert:
        with self.transaction():
            found = self._accounting_alert("id = ?", id)
            if found is None:
                raise StoreError(f"there is no accounting alert #{id}")
            if found.state == "closed":
                raise StoreError(f"accounting alert #{id} is closed (its condition cleared); "
                                 "nothing to acknowledge")
            if found.state == "open":
                self._conn.execute("UPDATE accounting_alerts SET state = 'acknowledged',"
                                   " acked_by = ?, acked_ms = ? WHERE id = ?", (by, at_ms, id))
                found = self._accounting_alert("id = ?", id)
            assert found is not None
            return found

    def accounting_alerts(self, *, state: str | None = None, kind: str | None = None,
                          limit: int = 100) -> list[AccountingAlert]:
        where, args = ["1 = 1"], []
        if state == "live":
            where.append("state != 'closed'")
        elif state is not None:
            where.append("state = ?")
            args.append(state)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        rows = self._read(f"SELECT {self._ACC_COLUMNS} FROM accounting_alerts"
                          f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", *args, limit)
        return [AccountingAlert(*row) for row in rows]  # type: ignore[arg-type]

    def gateway_last_seen(self) -> dict[str, int]:
        rows = self._read("SELECT gateway, MAX(received_ms) FROM envelopes GROUP BY gateway"
                          " ORDER BY gateway")
        return {str(g): int(str(ms)) for g, ms in rows}
