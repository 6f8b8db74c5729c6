"""The SQLite buffer's tables, and the steps that bring an older store up to date.

Tables (readable with ``sqlite-utils rows buffer.db <table>``):

* ``meta``: epoch, next_seq, head (hash of the last sealed envelope: the next one's ``prev``),
  sealed_last / sealed_count (the last cycle sealed and how many envelopes were sealed in this
  epoch: what a checkpoint states; sealed_last is -1 while unknown after a migration),
  dropped_cycles / dropped_readings (every cycle dropped or refused in this epoch).
* ``cycles``: one row per committed poll cycle; ``envelope`` is the seq of the envelope that
  sealed it (NULL while unsealed); ``boot_id``/``mono_ms`` say when it was committed on the
  monotonic clock (only the live-first drain uses them; nothing is ordered by the wall clock).
* ``envelopes``: sealed, signed envelopes; ``sent_ms`` is set once the next hop accepted one.
* ``gaps``: cycles dropped (disk cap) or refused (policy block); ``envelope`` is NULL until the
  gap is sealed into an envelope, so it travels signed.
* ``alarms``: what a technician must see (``nengtan agent status``).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS cycles (
    seq INTEGER PRIMARY KEY, taken_ms INTEGER, synced INTEGER, n INTEGER, readings TEXT,
    envelope INTEGER, boot_id TEXT, mono_ms INTEGER);
CREATE INDEX IF NOT EXISTS idx_cycles_envelope_seq ON cycles (envelope, seq);
CREATE TABLE IF NOT EXISTS envelopes (
    seq INTEGER PRIMARY KEY, last INTEGER, hash TEXT, token TEXT, readings INTEGER,
    sealed_ms INTEGER, sent_ms INTEGER, boot_id TEXT, mono_ms INTEGER);
CREATE INDEX IF NOT EXISTS idx_envelopes_sent_ms_seq ON envelopes (sent_ms, seq);
"""

_V2_TABLES = """
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY, first INTEGER, last INTEGER, readings INTEGER, reason TEXT,
    recorded_ms INTEGER, envelope INTEGER);
CREATE INDEX IF NOT EXISTS idx_gaps_envelope ON gaps (envelope);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY, raised_ms INTEGER, kind TEXT, message TEXT);
"""

_META_DEFAULTS = (("next_seq", "1"), ("head", ""), ("dropped_cycles", "0"),
                  ("dropped_readings", "0"), ("sealed_last", "0"), ("sealed_count", "0"))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def create(conn: sqlite3.Connection, epoch: int) -> None:
    """Create every table of a new store for ``epoch``; the caller holds the transaction."""
    for statement in _statements(_TABLES + _V2_TABLES):
        conn.execute(statement)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", (("epoch", str(epoch)), *_META_DEFAULTS))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(conn: sqlite3.Connection) -> None:
    """Bring an existing store to SCHEMA_VERSION; the caller holds the transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < 2:
        for table in ("cycles", "envelopes"):
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if "boot_id" not in columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN boot_id TEXT")
                conn.execute(f"ALTER TABLE {table} ADD COLUMN mono_ms INTEGER")
        for statement in _statements(_V2_TABLES):
            conn.execute(statement)
        head = conn.execute("SELECT hash FROM envelopes ORDER BY seq DESC LIMIT 1").fetchone()
        conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", _META_DEFAULTS)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (head[0] if head else "",))
    if version < 3:
        _count_sealed(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _count_sealed(conn: sqlite3.Connection) -> None:
    """Fill sealed_last / sealed_count from the envelopes a v1 or v2 store still holds.

    Exact for every store that never deleted an envelope (all v1 stores: they had no history
    expiry and no cap). A v2 store may have pruned or dropped some: then sealed_count can only
    count those left, and if the head envelope itself is gone, sealed_last is unknown (-1) and
    no checkpoint is published until the next envelope is sealed.
    """
    head = str(conn.execute("SELECT value FROM meta WHERE key = 'head'").fetchone()[0] or "")
    count = int(conn.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0])
    row = conn.execute("SELECT last, hash FROM envelopes ORDER BY seq DESC LIMIT 1").fetchone()
    if not head:
        last = 0
    elif row is not None and row[1] == head:
        last = int(row[0])
    else:
        last = -1
    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                     (("sealed_last", str(last)), ("sealed_count", str(count))))
