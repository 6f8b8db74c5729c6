"""The SQLite buffer's tables, and the steps that bring an older store up to date.

Tables (readable with ``sqlite-utils rows buffer.db <table>``):

* ``meta``: epoch, next_seq, head (hash of the last sealed envelope: the next one's ``prev``),
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

SCHEMA_VERSION = 2

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
                  ("dropped_readings", "0"))


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
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
