"""The PostgreSQL backend of ``Store`` (psycopg 3): the production store for many gateways.

Same semantics as ``SqliteStore``; what differs is how: readings and counter points go in by
binary COPY, and the rollup work of one envelope is one query for every series' neighbours and
one upsert for every bucket, so an envelope costs about fifteen round trips whatever its size.
``transaction(lock=gateway)`` takes a transaction-scoped advisory lock on the gateway, so
receivers on a shared subscription serialise per gateway, not on the whole database.

One connection, used under a lock (like the SQLite store) so the paho thread and the main
thread can share the store. If the server drops it (restart, failover), the call that notices
raises StoreError (ingest does not acknowledge) and the next call connects again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from cloud_receiver._pg_alerts import PgAccountingAlerts
from cloud_receiver._pg_schema import migrate
from cloud_receiver.store import (
    ROLLUP_PERIODS,
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

Conn = psycopg.Connection[tuple[Any, ...]]

_ENVELOPE_COLUMNS = "gateway, epoch, seq, last, hash, prev, kid, received_ms, token"
_CHECKPOINT_COLUMNS = ("hash, gateway, epoch, last, head, sealed, boot_id, mono_ms, wall_ms, kid,"
                       " received_ms, token, head_ok")
_POINT_COLUMNS = "meter, measurement, epoch, seq, ts_ms, value"
_READING_TYPES = ("text", "int8", "int8", "text", "text", "int8", "float8", "text")
_POINT_TYPES = ("text", "text", "text", "int8", "int8", "int8", "float8")

# Both neighbours of every series of an envelope in one query; each LATERAL side is one seek
# on counter_points' primary key, walking from the envelope's edge.
_NEIGHBOURS_SQL = f"""
SELECT s.meter, s.measurement, b.epoch, b.seq, b.ts_ms, b.value,
       a.epoch, a.seq, a.ts_ms, a.value
FROM unnest(%(meters)s::text[], %(measurements)s::text[]) AS s (meter, measurement)
LEFT JOIN LATERAL (
    SELECT {_POINT_COLUMNS} FROM counter_points c
    WHERE c.gateway = %(gateway)s AND c.meter = s.meter AND c.measurement = s.measurement
      AND (c.epoch, c.seq) < (%(epoch)s::bigint, %(seq)s::bigint)
    ORDER BY c.epoch DESC, c.seq DESC LIMIT 1) b ON true
LEFT JOIN LATERAL (
    SELECT {_POINT_COLUMNS} FROM counter_points c
    WHERE c.gateway = %(gateway)s AND c.meter = s.meter AND c.measurement = s.measurement
      AND (c.epoch, c.seq) > (%(epoch)s::bigint, %(last)s::bigint)
    ORDER BY c.epoch, c.seq LIMIT 1) a ON true
"""

# Every bucket of an envelope in one statement. The GROUP BY makes duplicate buckets in one
# call add up (ON CONFLICT may not touch a row twice); ``merge`` normally sent each once.
_ROLLUPS_SQL = """
INSERT INTO rollups AS r (gateway, meter, measurement, period, start_ms, amount, intervals,
                          anomalies, long_intervals)
SELECT %s, meter, measurement, period, start_ms, SUM(amount), SUM(intervals), SUM(anomalies),
       SUM(long_intervals)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::float8[], %s::bigint[],
            %s::bigint[], %s::bigint[])
     AS d (meter, measurement, period, start_ms, amount, intervals, anomalies, long_intervals)
GROUP BY meter, measurement, period, start_ms
ON CONFLICT (gateway, meter, measurement, period, start_ms) DO UPDATE SET
    amount = r.amount + excluded.amount, intervals = r.intervals + excluded.intervals,
    anomalies = r.anomalies + excluded.anomalies,
    long_intervals = r.long_intervals + excluded.long_intervals
"""

_STREAMS_SQL = """
WITH s AS (SELECT gateway, epoch FROM envelopes UNION SELECT gateway, epoch FROM gaps
           UNION SELECT gateway, epoch FROM checkpoints)
SELECT s.gateway, s.epoch,
    (SELECT COUNT(*) FROM envelopes e WHERE e.gateway = s.gateway AND e.epoch = s.epoch),
    (SELECT COALESCE(MAX(last), 0) FROM envelopes e
     WHERE e.gateway = s.gateway AND e.epoch = s.epoch),
    top.last, top.sealed, top.received_ms,
    (SELECT COUNT(*) FROM checkpoints c WHERE c.gateway = s.gateway AND c.epoch = s.epoch),
    (SELECT COUNT(*) FROM checkpoints c WHERE c.gateway = s.gateway AND c.epoch = s.epoch
     AND c.head_ok = false)
FROM s LEFT JOIN LATERAL (
    SELECT last, sealed, received_ms FROM checkpoints c
    WHERE c.gateway = s.gateway AND c.epoch = s.epoch
    ORDER BY last DESC, sealed DESC, received_ms DESC LIMIT 1) top ON true
"""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def redact(url: str) -> str:
    """``url`` without its password (userinfo or ``password=``), for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{host}"
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("password="))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL. Quarantine and alert details echo what a sender sent;
    a NUL there must not make the message unstorable (it would be redelivered forever)."""
    return value.replace("\x00", "\\x00")


def _text_array(items: Sequence[str]) -> str:
    """A PostgreSQL array literal of ``items``, each quoted (so "NULL" stays a string)."""
    return "{" + ",".join('"' + x.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for x in items) + "}"


def _array(items: Sequence[int | float]) -> str:
    """A PostgreSQL array literal of numbers: ``repr`` of a float reads back to the same
    double (PostgreSQL accepts its ``inf`` and ``nan`` too)."""
    return "{" + ",".join(map(repr, items)) + "}"


def _envelope(row: tuple[Any, ...] | None) -> StoredEnvelope | None:
    return None if row is None else StoredEnvelope(*row)


def _checkpoint(row: tuple[Any, ...]) -> StoredCheckpoint:
    (hash_, gateway, epoch, last, head, sealed, boot_id, mono_ms, wall_ms, kid, received_ms,
     token, head_ok) = row
    clock = None if boot_id is None else ClockInfo(boot_id, mono_ms, wall_ms)
    return StoredCheckpoint(hash_, gateway, epoch, last, head, sealed, clock, kid, received_ms,
                            token, head_ok)


def _point(meter: str, measurement: str, rest: Sequence[Any]) -> CounterPoint | None:
    epoch, seq, ts_ms, value = rest
    return None if epoch is None else CounterPoint(meter, measurement, epoch, seq, ts_ms, value)


class _Txn:
    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def _one(self, where: str, *args: object) -> StoredEnvelope | None:
        sql = f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE {where} LIMIT 1"
        return _envelope(self._conn.execute(sql, args).fetchone())

    def envelope_starting_at(self, gateway: str, epoch: int, seq: int) -> StoredEnvelope | None:
        return self._one("gateway = %s AND epoch = %s AND seq = %s", gateway, epoch, seq)

    def envelope_ending_at(self, gateway: str, epoch: int, last: int) -> StoredEnvelope | None:
        return self._one("gateway = %s AND epoch = %s AND last = %s", gateway, epoch, last)

    def envelope_overlapping(
        self, gateway: str, epoch: int, seq: int, last: int
    ) -> StoredEnvelope | None:
        return self._one(
            "gateway = %s AND epoch = %s AND seq <= %s AND last >= %s AND seq != %s",
            gateway, epoch, last, seq, seq,
        )

    def envelope_covering(self, gateway: str, epoch: int, seq: int) -> StoredEnvelope | None:
        # Stored envelopes never overlap: the one starting last at or before seq is the only
        # candidate, found on the primary key.
        found = _envelope(self._conn.execute(
            f"SELECT {_ENVELOPE_COLUMNS} FROM envelopes WHERE gateway = %s AND epoch = %s"
            " AND seq <= %s ORDER BY seq DESC LIMIT 1", (gateway, epoch, seq)).fetchone())
        return found if found is not None and found.last >= seq else None

    def add_envelope(self, envelope: StoredEnvelope,
                     readings: Iterable[tuple[int, str, str, int, float | None, str]], *,
                     version: int = 1, clock: ClockInfo | None = None,
                     gaps: Sequence[Gap] = (), synced: bool | None = None) -> int:
        e, c = envelope, clock
        self._conn.execute(
            f"INSERT INTO envelopes ({_ENVELOPE_COLUMNS}, version, boot_id, mono_ms, wall_ms,"
            " synced) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (e.gateway, e.epoch, e.seq, e.last, e.hash, e.prev, e.kid, e.received_ms, e.token,
             version, c and c.boot_id, c and c.mono_ms, c and c.wall_ms, synced),
        )
        if gaps:
            with self._conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO gaps VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(e.gateway, e.epoch, g.first, g.last, g.readings, g.reason, e.seq)
                     for g in gaps],
                )
        # Straight COPY, no ON CONFLICT: the caller has checked, under the gateway's lock, that
        # no stored envelope overlaps this one (see the readings table in _pg_schema).
        key = (e.gateway, e.epoch)
        with self._conn.cursor() as cur:
            with cur.copy("COPY readings (gateway, epoch, seq, meter, measurement, ts_ms, value,"
                          " quality) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_READING_TYPES)
                for row in readings:
                    copy.write_row(key + row)
            return max(cur.rowcount, 0)

    def settle_checkpoints(self, envelope: StoredEnvelope) -> list[StoredCheckpoint]:
        e = envelope
        rows = self._conn.execute(
            "UPDATE checkpoints SET head_ok = COALESCE(last = %s AND head = %s, false)"
            " WHERE gateway = %s AND epoch = %s AND last BETWEEN %s AND %s AND head_ok IS NULL"
            f" RETURNING {_CHECKPOINT_COLUMNS}",
            (e.last, e.hash, e.gateway, e.epoch, e.seq, e.last),
        ).fetchall()
        conflicts = [_checkpoint(row) for row in rows if row[-1] is False]
        return sorted(conflicts, key=lambda cp: (cp.last, cp.received_ms, cp.hash))

    def has_checkpoint(self, hash: str) -> bool:
        return self._conn.execute("SELECT 1 FROM checkpoints WHERE hash = %s",
                                  (hash,)).fetchone() is not None

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        c, clock = checkpoint, checkpoint.clock
        self._conn.execute(
            f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s,"
            " %s, %s, %s, %s, %s, %s, %s)",
            (c.hash, c.gateway, c.epoch, c.last, c.head, c.sealed, clock and clock.boot_id,
             clock and clock.mono_ms, clock and clock.wall_ms, c.kid, c.received_ms, c.token,
             c.head_ok),
        )

    def counter_neighbours(
        self, gateway: str, epoch: int, seq: int, last: int,
        series: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], tuple[CounterPoint | None, CounterPoint | None]]:
        if not series:
            return {}
        rows = self._conn.execute(_NEIGHBOURS_SQL, {
            "meters": [m for m, _ in series], "measurements": [n for _, n in series],
            "gateway": gateway, "epoch": epoch, "seq": seq, "last": last,
        }).fetchall()
        return {(row[0], row[1]): (_point(row[0], row[1], row[2:6]),
                                   _point(row[0], row[1], row[6:10])) for row in rows}

    def add_counter_points(self, gateway: str, points: Sequence[CounterPoint]) -> None:
        if not points:
            return
        with self._conn.cursor() as cur, cur.copy(
                f"COPY counter_points (gateway, {_POINT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_POINT_TYPES)
            for p in points:
                copy.write_row((gateway, p.meter, p.measurement, p.epoch, p.seq, p.ts_ms,
                                p.value))

    def adjust_rollups(self, gateway: str, deltas: Sequence[RollupDelta]) -> None:
        if not deltas:
            return
        # Array literals, not lists: psycopg dumps a list element by element in Python, which
        # was a fifth of the ingest time of a live 500-reading envelope (bench/ingest.py).
        self._conn.execute(_ROLLUPS_SQL, (
            gateway, _text_array([d.meter for d in deltas]),
            _text_array([d.measurement for d in deltas]),
            _text_array([d.period for d in deltas]), _array([d.start_ms for d in deltas]),
            _array([float(d.amount) for d in deltas]), _array([d.intervals for d in deltas]),
            _array([d.anomalies for d in deltas]), _array([d.long_intervals for d in deltas]),
        ))

    def clear_rollups(self, gateway: str) -> None:
        self._conn.execute("DELETE FROM rollups WHERE gateway = %s", (gateway,))

    def add_alert(self, alert: Alert) -> None:
        a = alert
        self._conn.execute(
            "INSERT INTO alerts (received_ms, kind, gateway, epoch, detail)"
            " VALUES (%s, %s, %s, %s, %s)",
            (a.received_ms, a.kind, a.gateway, a.epoch, _text(a.detail)),
        )


class PgStore(PgAccountingAlerts):
    """``Store`` on one PostgreSQL schema: the first in the URL's ``search_path`` (set it with
    ``?options=-csearch_path%3Dname``), else ``public``. Safe to share between threads."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self._url, self._where = url, redact(url)
        self._lock = threading.RLock()
        self._closed = False
        self._conn = self._connect()
        try:
            row = self._conn.execute("SELECT current_schema()").fetchone()
            schema = row[0] if row else None
            if schema is None:
                raise StoreError(f"{self._where}: no schema of the search_path exists; "
                                 "create it first (CREATE SCHEMA ...)")
            # Advisory locks are per database: the schema keeps two stores in one database
            # (tests, staging beside production) from waiting on each other.
            self._lock_prefix = f"nengtan-receiver/{schema}/"
            migrate(self._conn, self._lock_prefix + "migrate", self._where, create=create)
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreError(f"cannot open the receiver database {self._where}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> Conn:
        try:
            # Autocommit: every transaction below is explicit (conn.transaction()).
            return psycopg.connect(self._url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the receiver database {self._where}: "
                             f"{str(exc).strip()}") from exc

    def _live(self) -> Conn:
        if self._closed:
            raise StoreError(f"the receiver database {self._where} is closed")
        if self._conn.closed:  # dropped by the server: try again on a new connection
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def _using(self) -> Iterator[Conn]:
        """The connection, for one statement or transaction, with errors as StoreError."""
        with self._lock:
            try:
                yield self._live()
            except psycopg.Error as exc:
                raise StoreError(f"receiver database {self._where}: {str(exc).strip()}") from exc

    @contextmanager
    def transaction(self, lock: str | None = None) -> Iterator[_Txn]:
        with self._using() as conn, conn.transaction():
            if lock is not None:
                self._advisory_lock(conn, "gateway/" + lock)
            yield _Txn(conn)

    def _advisory_lock(self, conn: Conn, name: str) -> None:
        # Held until the transaction ends; a 64-bit hash of the name makes collisions moot.
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     (self._lock_prefix + name,))

    def _read(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with self._using() as conn:
            return conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

    def add_key(self, key: EnrolledKey, *, event: str = "enrolled", detail: str = "") -> bool:
        with self._using() as conn, conn.transaction():
            # Key changes are rare: one lock for all of them keeps check-then-insert atomic.
            self._advisory_lock(conn, "keys")
            row = conn.execute("SELECT gateway FROM keys WHERE kid = %s", (key.kid,)).fetchone()
            if row is not None:
                if row[0] != key.gateway:
                    raise IdentityError(f"{key.source}: key {key.kid} is already enrolled for "
                                        f"gateway {row[0]!r}, not {key.gateway!r}")
                return False
            conn.execute("INSERT INTO gateways VALUES (%s, %s) ON CONFLICT DO NOTHING",
                         (key.gateway, key.enrolled_at))
            conn.execute("INSERT INTO keys VALUES (%s, %s, %s, %s, %s, %s)",
                         (key.kid, key.gateway, key.alg, key.material, key.enrolled_at,
                          key.source))
            conn.execute("INSERT INTO key_events (at, event, kid, gateway, detail, source)"
                         " VALUES (%s, %s, %s, %s, %s, %s)",
                         (_now_iso(), event, key.kid, key.gateway, detail or key.alg,
                          key.source))
            return True

    def keys(self) -> list[EnrolledKey]:
        rows = self._read("SELECT kid, gateway, alg, material, enrolled_at, source FROM keys")
        return [EnrolledKey(*row) for row in rows]

    def revoke_key(self, revocation: Revocation) -> bool:
        r = revocation
        with self._using() as conn, conn.transaction():
            self._advisory_lock(conn, "keys")
            row = conn.execute("SELECT gateway FROM keys WHERE kid = %s", (r.kid,)).fetchone()
            if row is None or row[0] != r.gateway:
                raise IdentityError(f"{r.source}: key {r.kid} is not enrolled for gateway "
                                    f"{r.gateway!r}" + (f" (it belongs to {row[0]!r})" if row else ""))
            known = conn.execute("SELECT epoch, seq FROM revocations WHERE kid = %s",
                                 (r.kid,)).fetchone()
            if known is not None and tuple(known) <= (r.epoch, r.seq):
                return False
            conn.execute(
                "INSERT INTO revocations VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (kid)"
                " DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq,"
                " reason = excluded.reason, at = excluded.at, source = excluded.source",
                (r.kid, r.gateway, r.epoch, r.seq, r.reason, r.at, r.source))
            conn.execute("INSERT INTO key_events (at, event, kid, gateway, detail, source)"
                         " VALUES (%s, 'revoked', %s, %s, %s, %s)",
                         (r.at, r.kid, r.gateway,
                          f"from epoch {r.epoch} seq {r.seq}: {r.reason}", r.source))
            return True

    def revocations(self) -> list[Revocation]:
        rows = self._read("SELECT kid, gateway, epoch, seq, reason, at, source FROM revocations"
                          " ORDER BY gateway, kid")
        return [Revocation(*row) for row in rows]

    def key_events(self, *, limit: int = 1000) -> list[KeyEvent]:
        rows = self._read("SELECT at, event, kid, gateway, detail, source, id FROM key_events"
                          " ORDER BY id LIMIT %s", limit)
        return [KeyEvent(*row) for row in rows]

    def rollups(self, period: str, *, gateway: str | None = None, meter: str | None = None,
                measurement: str | None = None, start_ms: int | None = None,
                end_ms: int | None = None) -> list[Rollup]:
        if period not in ROLLUP_PERIODS:
            raise StoreError(f"no rollup period {period!r}; use one of "
                             + ", ".join(ROLLUP_PERIODS))
        where, args = ["period = %s"], [period]
        for column, value in (("gateway", gateway), ("meter", meter),
                              ("measurement", measurement)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        if start_ms is not None:
            where.append("start_ms >= %s")
            args.append(start_ms)  # type: ignore[arg-type]
        if end_ms is not None:
            where.append("start_ms < %s")
            args.append(end_ms)  # type: ignore[arg-type]
        rows = self._read(
            "SELECT gateway, meter, measurement, period, start_ms, amount, intervals, anomalies,"
            f" long_intervals FROM rollups WHERE {' AND '.join(where)}"
            " ORDER BY gateway, meter, measurement, start_ms", *args)
        return [Rollup(*row) for row in rows]

    def counter_points(self, gateway: str, meter: str,
                       measurement: str) -> list[CounterPoint]:
        rows = self._read(f"SELECT {_POINT_COLUMNS} FROM counter_points WHERE gateway = %s"
                          " AND meter = %s AND measurement = %s ORDER BY epoch, seq",
                          gateway, meter, measurement)
        return [CounterPoint(*row) for row in rows]

    def add_quarantine(self, item: QuarantineItem) -> int:
        with self._using() as conn:
            row = conn.execute(
                "INSERT INTO quarantine (received_ms, topic, reason, detail, payload)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (item.received_ms, _text(item.topic), item.reason, _text(item.detail),
                 item.payload),
            ).fetchone()
            return int(row[0]) if row else 0

    def quarantined(self, *, limit: int, reason: str | None = None) -> list[QuarantineItem]:
        where, args = ("WHERE reason = %s", (reason,)) if reason else ("", ())
        rows = self._read("SELECT received_ms, topic, reason, detail, payload, id FROM quarantine"
                          f" {where} ORDER BY id DESC LIMIT %s", *args, limit)
        return [QuarantineItem(*row) for row in rows]

    def quarantine_counts(self) -> dict[str, int]:
        rows = self._read("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason")
        return {str(reason): int(n) for reason, n in rows}

    def bump_counter(self, name: str, by: int = 1) -> None:
        with self._using() as conn:
            conn.execute("INSERT INTO counters AS c VALUES (%s, %s)"
                         " ON CONFLICT (name) DO UPDATE SET value = c.value + excluded.value",
                         (name, by))

    def counters(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._read("SELECT name, value FROM counters")}

    def counter_samples(self, measurement: str) -> Iterator[CounterSample]:
        if measurement not in ROLLED_UP:
            return iter(())
        rows = self._read(
            "SELECT gateway, meter, ts_ms, epoch, seq, value FROM counter_points"
            # The gateway's sequence is the true order; its wall clock may have been stepped.
            " WHERE measurement = %s ORDER BY gateway, meter, epoch, seq", measurement)
        return (CounterSample(*row) for row in rows)

    def stats(self) -> dict[str, int]:
        tables = ("gateways", "keys", "envelopes", "readings", "quarantine", "gaps",
                  "checkpoints", "alerts", "revocations", "key_events", "counter_points",
                  "rollups")
        row = self._read("SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {t})" for t in tables))[0]
        return {t: int(n) for t, n in zip(tables, row)}

    def streams(self, gateway: str | None = None) -> list[StreamSummary]:
        where, args = ("WHERE s.gateway = %s", (gateway,)) if gateway is not None else ("", ())
        rows = self._read(f"{_STREAMS_SQL} {where} ORDER BY s.gateway, s.epoch", *args)
        return [StreamSummary(gw, epoch, envelopes, stored_last, last or 0, sealed or 0,
                              received, checkpoints, conflicts)
                for (gw, epoch, envelopes, stored_last, last, sealed, received, checkpoints,
                     conflicts) in rows]

    def missing_ranges(self, gateway: str, epoch: int) -> list[MissingRange]:
        # Envelopes never overlap (ingest refuses it), so holes lie between neighbours by seq.
        holes = [(int(a), int(b)) for a, b in self._read(
            "SELECT before + 1, seq - 1 FROM (SELECT seq, COALESCE(LAG(last) OVER"
            " (ORDER BY seq), 0) AS before FROM envelopes WHERE gateway = %s AND epoch = %s) e"
            " WHERE seq > before + 1", gateway, epoch)]
        stored, claimed = (int(v) for v in self._read(
            "SELECT (SELECT COALESCE(MAX(last), 0) FROM envelopes WHERE gateway = %s"
            " AND epoch = %s), (SELECT COALESCE(MAX(last), 0) FROM checkpoints"
            " WHERE gateway = %s AND epoch = %s)", gateway, epoch, gateway, epoch)[0])
        if claimed > stored:
            holes.append((stored + 1, claimed))
        return classify_holes(holes, self.gaps(gateway, epoch))

    def gaps(self, gateway: str, epoch: int) -> list[Gap]:
        rows = self._read("SELECT first, last, readings, reason FROM gaps WHERE gateway = %s"
                          " AND epoch = %s ORDER BY first, last, reason", gateway, epoch)
        return [Gap(*row) for row in rows]

    def alerts(self, *, limit: int) -> list[Alert]:
        rows = self._read("SELECT received_ms, kind, gateway, epoch, detail, id FROM alerts"
                          " ORDER BY id DESC LIMIT %s", limit)
        return [Alert(*row) for row in rows]
