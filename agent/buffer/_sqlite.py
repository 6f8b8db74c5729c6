"""The SQLite buffer: WAL with synchronous=FULL, one transaction per poll cycle.

Technicians can read it with the sqlite-utils CLI, e.g.
``sqlite-utils rows /var/lib/nengtan/buffer.db envelopes --limit 5``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from agent.buffer._contract import BufferStats, Sealed, Sealer
from nengtan.envelope import Cycle, Envelope, Reading, envelope_hash
from nengtan.errors import StoreError

SCHEMA_VERSION = 1


def _migrate(db: sqlite_utils.Database) -> None:
    """Bring the schema to SCHEMA_VERSION; each step runs once, recorded in user_version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version < 1:
        db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
        db.table("cycles").create(
            {"seq": int, "taken_ms": int, "synced": int, "n": int, "readings": str, "envelope": int},
            pk="seq", if_not_exists=True,
        )
        db.table("cycles").create_index(["envelope", "seq"], if_not_exists=True)
        db.table("envelopes").create(
            {"seq": int, "last": int, "hash": str, "token": str, "readings": int,
             "sealed_ms": int, "sent_ms": int},
            pk="seq", if_not_exists=True,
        )
        db.table("envelopes").create_index(["sent_ms", "seq"], if_not_exists=True)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', '1'), ('next_seq', '1')")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class SqliteBuffer:
    def __init__(self, path: Path | str, *, gateway: str, sealer: Sealer) -> None:
        self._gateway, self._sealer = gateway, sealer
        self._inflight: set[int] = set()
        try:
            # Autocommit mode: every transaction below is explicit, so its extent is visible.
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL syncs the WAL at every commit: a committed cycle survives a power cut.
            self._conn.execute("PRAGMA synchronous=FULL")
            self._db = sqlite_utils.Database(self._conn)
            with self._transaction():
                _migrate(self._db)
            self._epoch = int(self._meta("epoch"))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the buffer at {path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _meta(self, key: str) -> str:
        return str(self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    @property
    def epoch(self) -> int:
        return self._epoch

    def add(self, readings: Sequence[Reading], *, taken_ms: int, time_synced: bool) -> int:
        blob = json.dumps([r.as_wire() for r in readings], separators=(",", ":"), allow_nan=False)
        try:
            with self._transaction() as conn:
                seq = int(self._meta("next_seq"))
                conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(seq + 1),))
                conn.execute(
                    "INSERT INTO cycles (seq, taken_ms, synced, n, readings) VALUES (?, ?, ?, ?, ?)",
                    (seq, taken_ms, int(time_synced), len(readings), blob),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot commit poll cycle: {exc}") from exc
        return seq

    def _seal_one(self, max_readings: int) -> bool:
        rows = self._conn.execute(
            "SELECT seq, synced, n, readings FROM cycles WHERE envelope IS NULL ORDER BY seq LIMIT 1000"
        ).fetchall()
        run: list[tuple[int, int, int, str]] = []
        total = 0
        for row in rows:
            if run and (row[1] != run[0][1] or total + row[2] > max_readings):
                break
            run.append(row)
            total += row[2]
        if not run:
            return False
        head = self._conn.execute("SELECT hash FROM envelopes ORDER BY seq DESC LIMIT 1").fetchone()
        cycles = tuple(Cycle(seq, tuple(Reading(*r) for r in json.loads(blob)))
                       for seq, _, _, blob in run)
        env = Envelope(self._gateway, self._epoch, run[0][0], run[-1][0],
                       head[0] if head else None, bool(run[0][1]), cycles)
        token = self._sealer(env)
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO envelopes (seq, last, hash, token, readings, sealed_ms) VALUES (?,?,?,?,?,?)",
                (env.seq, env.last, envelope_hash(token), token, total, int(time.time() * 1000)),
            )
            conn.execute("UPDATE cycles SET envelope = ? WHERE seq BETWEEN ? AND ?",
                         (env.seq, env.seq, env.last))
        return True

    def begin(self, *, max_envelopes: int, max_readings: int) -> list[Sealed]:
        try:
            while True:
                ready = self._ready(max_envelopes)
                if len(ready) >= max_envelopes or not self._seal_one(max_readings):
                    break
        except sqlite3.Error as exc:
            raise StoreError(f"cannot seal envelopes: {exc}") from exc
        self._inflight.update(s.seq for s in ready)
        return ready

    def _ready(self, limit: int) -> list[Sealed]:
        rows = self._conn.execute(
            "SELECT seq, last, token, readings FROM envelopes WHERE sent_ms IS NULL ORDER BY seq "
            "LIMIT ?", (limit + len(self._inflight),),
        ).fetchall()
        return [Sealed(*r) for r in rows if r[0] not in self._inflight][:limit]

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None:
        done = list(accepted)
        now = int(time.time() * 1000)
        try:
            with self._transaction() as conn:
                conn.executemany("UPDATE envelopes SET sent_ms = ? WHERE seq = ?",
                                 [(now, seq) for seq in done])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record acknowledgements: {exc}") from exc
        self._inflight.difference_update(done)
        self._inflight.difference_update(rejected)

    def stats(self) -> BufferStats:
        cycles, last = self._conn.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM cycles").fetchone()
        unsent, readings, oldest = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(c.n), 0), MIN(c.taken_ms) FROM cycles c "
            "LEFT JOIN envelopes e ON e.seq = c.envelope WHERE e.sent_ms IS NULL"
        ).fetchone()
        return BufferStats(self._epoch, cycles, unsent, readings, oldest, last)

    def close(self) -> None:
        self._conn.close()
