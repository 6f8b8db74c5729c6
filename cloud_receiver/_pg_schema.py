"""The PostgreSQL schema of the receiver's store and its migrations.

PostgreSQL has no ``user_version``: ``schema_migrations`` holds one row per applied migration.
Migration 1 is the whole schema as SQLite has it after its migration 4 (there is no PostgreSQL
data from before), so the history starts here; later ones are appended, never edited.

Text keys are ``COLLATE "C"``: ``ORDER BY`` then sorts as SQLite does (by bytes), whatever the
database's default collation, and B-tree comparisons are plain memcmp.
"""

from __future__ import annotations

from typing import Any

import psycopg

from cloud_receiver import _pg_alerts
from nengtan.errors import StoreError

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE gateways (
        gateway     text COLLATE "C" PRIMARY KEY,
        enrolled_at text NOT NULL
    );
    CREATE TABLE keys (
        kid         text COLLATE "C" PRIMARY KEY,
        gateway     text COLLATE "C" NOT NULL REFERENCES gateways (gateway),
        alg         text NOT NULL,
        material    bytea NOT NULL,
        enrolled_at text NOT NULL,
        source      text NOT NULL
    );
    CREATE TABLE envelopes (
        gateway     text COLLATE "C" NOT NULL,
        epoch       bigint NOT NULL,
        seq         bigint NOT NULL,
        last        bigint NOT NULL,
        hash        text NOT NULL,
        prev        text,
        kid         text NOT NULL,
        received_ms bigint NOT NULL,
        token       text NOT NULL,
        version     integer NOT NULL DEFAULT 1,
        boot_id     text,
        mono_ms     bigint,
        wall_ms     bigint,
        synced      boolean,
        PRIMARY KEY (gateway, epoch, seq)
    );
    CREATE INDEX envelopes_by_last ON envelopes (gateway, epoch, last);

    -- Readings are written with COPY and carry no primary key or B-tree: with 5,000-reading
    -- envelopes any B-tree, even one on (gateway, epoch, seq) alone, doubled the time COPY took
    -- (about 12 ms more per envelope, so 170,000 instead of 350,000 readings/s on this table,
    -- and 200 instead of 115 bytes per reading for the primary key). Uniqueness does not need
    -- one: ingest stores an envelope only after checking, under the gateway's lock, that no
    -- stored envelope overlaps its cycles, and the decoders reject a series repeated within a
    -- cycle. The BRIN index (a few KB) still finds an envelope's readings, or a time window,
    -- by block range: rows arrive in envelope order, so each range holds one or two envelopes.
    CREATE TABLE readings (
        gateway     text COLLATE "C" NOT NULL,
        epoch       bigint NOT NULL,
        seq         bigint NOT NULL,
        meter       text COLLATE "C" NOT NULL,
        measurement text COLLATE "C" NOT NULL,
        ts_ms       bigint NOT NULL,
        value       double precision,
        quality     text NOT NULL
    );
    CREATE INDEX readings_by_block ON readings USING brin (gateway, epoch, seq, ts_ms)
        WITH (autosummarize = on);

    CREATE TABLE quarantine (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_ms bigint NOT NULL,
        topic       text NOT NULL,
        reason      text COLLATE "C" NOT NULL,
        detail      text NOT NULL,
        payload     bytea NOT NULL
    );
    CREATE INDEX quarantine_by_reason ON quarantine (reason);
    CREATE TABLE counters (
        name        text COLLATE "C" PRIMARY KEY,
        value       bigint NOT NULL
    );
    CREATE TABLE gaps (
        gateway     text COLLATE "C" NOT NULL,
        epoch       bigint NOT NULL,
        first       bigint NOT NULL,
        last        bigint NOT NULL,
        readings    bigint NOT NULL,
        reason      text COLLATE "C" NOT NULL,
        declared_in bigint NOT NULL,
        PRIMARY KEY (gateway, epoch, first, last, reason)
    );
    CREATE TABLE checkpoints (
        hash        text PRIMARY KEY,
        gateway     text COLLATE "C" NOT NULL,
        epoch       bigint NOT NULL,
        last        bigint NOT NULL,
        head        text,
        sealed      bigint NOT NULL,
        boot_id     text,
        mono_ms     bigint,
        wall_ms     bigint,
        kid         text NOT NULL,
        received_ms bigint NOT NULL,
        token       text NOT NULL,
        head_ok     boolean
    );
    CREATE INDEX checkpoints_by_last ON checkpoints (gateway, epoch, last);
    CREATE TABLE alerts (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_ms bigint NOT NULL,
        kind        text NOT NULL,
        gateway     text COLLATE "C" NOT NULL,
        epoch       bigint NOT NULL,
        detail      text NOT NULL
    );
    CREATE TABLE revocations (
        kid         text COLLATE "C" PRIMARY KEY REFERENCES keys (kid),
        gateway     text COLLATE "C" NOT NULL,
        epoch       bigint NOT NULL,
        seq         bigint NOT NULL,
        reason      text NOT NULL,
        at          text NOT NULL,
        source      text NOT NULL
    );
    CREATE TABLE key_events (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at          text NOT NULL,
        event       text NOT NULL,
        kid         text NOT NULL,
        gateway     text NOT NULL,
        detail      text NOT NULL,
        source      text NOT NULL
    );
    -- Keyed in the gateway's sequence order, so a late envelope finds each series' neighbours
    -- with two index seeks (row comparisons on (epoch, seq) are index conditions).
    CREATE TABLE counter_points (
        gateway     text COLLATE "C" NOT NULL,
        meter       text COLLATE "C" NOT NULL,
        measurement text COLLATE "C" NOT NULL,
        epoch       bigint NOT NULL,
        seq         bigint NOT NULL,
        ts_ms       bigint NOT NULL,
        value       double precision NOT NULL,
        PRIMARY KEY (gateway, meter, measurement, epoch, seq)
    );
    CREATE TABLE rollups (
        gateway     text COLLATE "C" NOT NULL,
        meter       text COLLATE "C" NOT NULL,
        measurement text COLLATE "C" NOT NULL,
        period      text COLLATE "C" NOT NULL,
        start_ms    bigint NOT NULL,
        amount      double precision NOT NULL,
        intervals   bigint NOT NULL,
        anomalies   bigint NOT NULL,
        long_intervals bigint NOT NULL,
        PRIMARY KEY (gateway, meter, measurement, period, start_ms)
    -- Every envelope rewrites the open buckets of its series (a live one-minute envelope: a
    -- daily bucket 1,440 times a day). Room left in each page keeps those updates HOT, so they
    -- add no index entries and their dead versions are pruned in place (bench/ingest.py).
    ) WITH (fillfactor = 70);
    """,
    # 2: accounting alerts with their acknowledgement (SQLite's migration 5).
    _pg_alerts.MIGRATION,
)

_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version     integer PRIMARY KEY,
        applied_at  timestamptz NOT NULL DEFAULT now()
    )
"""


def schema_version(conn: psycopg.Connection[Any]) -> int | None:
    """The highest applied migration in the connection's schema; None if it has no store."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    found = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(found[0]) if found else 0


def migrate(conn: psycopg.Connection[Any], lock_key: str, where: str, *, create: bool) -> int:
    """Bring the schema up to date in one transaction; return the version now in place.

    ``lock_key`` names the store's migration lock: a second receiver starting at the same time
    waits on it, then finds the work done. DDL is transactional in PostgreSQL, so a failed
    migration leaves nothing behind.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key,))
        version = schema_version(conn)
        if version is None:
            if not create:
                raise StoreError(f"there is no receiver database at {where} (no receiver "
                                 "tables in its schema); start `nengtan receiver run` first "
                                 "or fix [storage] url")
            conn.execute(_VERSION_TABLE)
            version = 0
        if version > len(MIGRATIONS):
            raise StoreError(f"{where} has schema version {version}, newer than this "
                             f"receiver ({len(MIGRATIONS)}); upgrade the receiver")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # No parameters: psycopg sends the script as one simple query, many statements.
            conn.execute(script)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
        return len(MIGRATIONS)
