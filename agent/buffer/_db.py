"""The SQLite connection of the buffer with the few helpers every part of it shares."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

WAL_MAX_PAGES = 1000  # SQLite's default checkpoint threshold (4 MB of 4 KiB pages)
RELEASE_MAX_PAGES = 25_600  # pages given back per call (100 MB of 4 KiB pages): bounded work


def sqlite_code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code of ``exc`` (0 for errors raised by Python itself)."""
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


class Db:
    def __init__(self, conn: sqlite3.Connection, path: Path, max_bytes: int | None) -> None:
        self.conn, self.path = conn, path
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL syncs the WAL at every commit: a committed cycle survives a power cut.
        conn.execute("PRAGMA synchronous=FULL")
        self.page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        # The WAL counts against the cap, so keep it to a small share of it (and never let a
        # burst leave a big WAL file behind after a checkpoint).
        pages = WAL_MAX_PAGES if max_bytes is None else max(16, min(
            WAL_MAX_PAGES, max_bytes // self.page_size // 32))
        conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
        conn.execute(f"PRAGMA journal_size_limit = {pages * self.page_size}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:  # SQLite rolls back by itself on e.g. SQLITE_FULL
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def meta(self, key: str) -> str:
        return str(self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def set_meta(self, key: str, value: object) -> None:
        self.conn.execute("UPDATE meta SET value = ? WHERE key = ?", (str(value), key))

    def _pragma(self, name: str) -> int:
        return int(self.conn.execute(f"PRAGMA {name}").fetchone()[0])

    def wal_bytes(self) -> int:
        try:
            return os.stat(f"{self.path}-wal").st_size
        except FileNotFoundError:
            return 0

    def file_bytes(self) -> int:
        """What the store takes on disk: page_count × page_size + the WAL."""
        return self._pragma("page_count") * self.page_size + self.wal_bytes()

    def used_bytes(self) -> int:
        """Like file_bytes, without free pages (reused by the next inserts before the file grows),
        so it drops as soon as rows are deleted: this is what the cap is checked against."""
        free = self._pragma("freelist_count")
        return (self._pragma("page_count") - free) * self.page_size + self.wal_bytes()

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def release_free_pages(self, min_share: float, min_pages: int) -> int:
        """Give free pages back to the file system when they are many; return how many went.

        Free pages are reused by new rows before the file grows, so releasing a few only makes
        SQLite allocate (and write) them again: do it only when a large share of the file is
        free, e.g. after a long backlog was sent and its history expired.
        """
        free, total = self._pragma("freelist_count"), self._pragma("page_count")
        if free < min_pages or free < total * min_share:
            return 0
        if self._pragma("auto_vacuum") == 2:
            # A pragma that steps once per page: executescript runs it to the end.
            self.conn.executescript(f"PRAGMA incremental_vacuum({min(free, RELEASE_MAX_PAGES)});")
        else:  # a store created before auto_vacuum: convert it once, by a full rewrite
            self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self.conn.execute("VACUUM")
        self.checkpoint()
        return free - self._pragma("freelist_count")

    def record_gap(self, first: int, last: int, readings: int, reason: str, now_ms: int) -> None:
        """Declare cycles first..last dropped (inside the caller's transaction); adjacent pending
        gaps of the same reason merge."""
        row = self.conn.execute(
            "SELECT id FROM gaps WHERE envelope IS NULL AND reason = ? AND last = ? "
            "ORDER BY id DESC LIMIT 1", (reason, first - 1)).fetchone()
        if row:
            self.conn.execute("UPDATE gaps SET last = ?, readings = readings + ? WHERE id = ?",
                              (last, readings, row[0]))
        else:
            self.conn.execute("INSERT INTO gaps (first, last, readings, reason, recorded_ms) "
                              "VALUES (?, ?, ?, ?, ?)", (first, last, readings, reason, now_ms))
        self.conn.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped_cycles'",
                          (last - first + 1,))
        self.conn.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped_readings'",
                          (readings,))

    def record_alarm(self, kind: str, message: str, now_ms: int) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO alarms (raised_ms, kind, message) VALUES (?, ?, ?)",
                         (now_ms, kind, message))
