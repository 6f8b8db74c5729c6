"""What `nengtan agent status` shows: the buffer read through a read-only connection, so it can
run beside the agent and never repairs, migrates or quarantines anything itself."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from agent.buffer._contract import Alarm, BufferStats
from agent.buffer._open import QUARANTINE_DIR, read_epoch
from nengtan.envelope import Gap
from nengtan.errors import StoreError

ALARMS_SHOWN = 20


def _one(conn: sqlite3.Connection, sql: str, *args: object) -> tuple[int, ...]:
    return tuple(conn.execute(sql, args).fetchone())


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _meta(conn: sqlite3.Connection, key: str, default: int = 0) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row and str(row[0]).lstrip("-").isdigit() else default


def buffer_stats(conn: sqlite3.Connection, epoch: int, db_bytes: int,
                 max_bytes: int | None) -> BufferStats:
    unsent_from = ("FROM cycles c LEFT JOIN envelopes e ON e.seq = c.envelope "
                   "WHERE e.sent_ms IS NULL")
    unsent, readings = _one(conn, f"SELECT COUNT(*), COALESCE(SUM(c.n), 0) {unsent_from}")
    oldest = conn.execute(f"SELECT c.taken_ms {unsent_from} ORDER BY c.seq LIMIT 1").fetchone()
    gaps, gap_readings = (_one(conn, "SELECT COUNT(*), COALESCE(SUM(readings), 0) FROM gaps "
                               "WHERE envelope IS NULL") if "gaps" in _tables(conn) else (0, 0))
    return BufferStats(
        epoch, _one(conn, "SELECT COUNT(*) FROM cycles")[0], unsent, readings,
        oldest[0] if oldest else None, _meta(conn, "next_seq", 1) - 1,
        unsent_envelopes=_one(conn, "SELECT COUNT(*) FROM envelopes WHERE sent_ms IS NULL")[0],
        unsealed_cycles=_one(conn, "SELECT COUNT(*) FROM cycles WHERE envelope IS NULL")[0],
        pending_gaps=gaps, pending_gap_readings=gap_readings,
        dropped_cycles=_meta(conn, "dropped_cycles"), dropped_readings=_meta(conn, "dropped_readings"),
        sealed_last=max(_meta(conn, "sealed_last"), 0), sealed_envelopes=_meta(conn, "sealed_count"),
        db_bytes=db_bytes, max_bytes=max_bytes,
    )


@dataclass
class StoreReport:
    path: str
    epoch_file: int | None
    full_policy: str
    stats: BufferStats
    oldest_unsent_age_s: float | None  # by the wall clock, as far as it can be trusted
    gaps: list[Gap] = field(default_factory=list)  # pending: not sealed into an envelope yet
    alarms: list[Alarm] = field(default_factory=list)  # newest last, at most ALARMS_SHOWN
    alarm_count: int = 0
    quarantined: list[str] = field(default_factory=list)


def inspect_store(path: Path, *, max_bytes: int | None, full_policy: str) -> StoreReport:
    """Read the buffer at ``path`` without changing it; StoreError if it cannot be read."""
    if not path.exists():
        raise StoreError(f"no buffer at {path} yet: the agent has not run with this config")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            page = _one(conn, "PRAGMA page_size")[0] * _one(conn, "PRAGMA page_count")[0]
            wal = os.stat(f"{path}-wal").st_size if os.path.exists(f"{path}-wal") else 0
            stats = buffer_stats(conn, _meta(conn, "epoch"), page + wal, max_bytes)
            tables = _tables(conn)
            gaps = [Gap(*r) for r in conn.execute(
                "SELECT first, last, readings, reason FROM gaps WHERE envelope IS NULL "
                "ORDER BY first")] if "gaps" in tables else []
            alarms = [Alarm(*r) for r in conn.execute(
                "SELECT raised_ms, kind, message FROM alarms ORDER BY id DESC LIMIT ?",
                (ALARMS_SHOWN,))][::-1] if "alarms" in tables else []
            count = _one(conn, "SELECT COUNT(*) FROM alarms")[0] if "alarms" in tables else 0
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the buffer at {path}: {exc} (if it is damaged, the agent "
                         "moves it to quarantine/ and starts a new epoch at its next start)") from exc
    age = None if stats.oldest_unsent_ms is None else max(
        0.0, time.time() - stats.oldest_unsent_ms / 1000)
    quarantine = path.parent / QUARANTINE_DIR
    return StoreReport(str(path), read_epoch(path.parent), full_policy, stats, age, gaps, alarms,
                       count, sorted(str(p) for p in quarantine.iterdir()) if quarantine.is_dir() else [])
