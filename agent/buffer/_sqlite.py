"""The SQLite buffer: WAL with synchronous=FULL, one transaction per poll cycle.

Opening checks the store and quarantines a damaged one (_open.py); ``add`` keeps the store under
its disk cap (_cap.py); ``begin`` streams: it reads cycle metadata, then the readings of one
envelope at a time, and tokens only of what it returns, so a backlog of a million readings is
never in memory. Technicians can read the store with the sqlite-utils CLI, e.g.
``sqlite-utils rows /var/lib/nengtan/buffer.db envelopes --limit 5``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn

from agent.buffer._cap import delete_envelopes, make_room
from agent.buffer._clock import is_live, system_clock
from agent.buffer._contract import (
    FULL_POLICIES,
    LIVE_S,
    Alarm,
    BufferFull,
    BufferStats,
    ChainHead,
    ClockSource,
    Sealed,
    Sealer,
    send_order,
)
from agent.buffer._db import Db, sqlite_code
from agent.buffer._memory import SEAL_BUDGET
from agent.buffer._open import open_store
from nengtan.envelope import Cycle, Envelope, Gap, Reading, envelope_hash
from nengtan.errors import StoreError

log = logging.getLogger(__name__)

PRUNE_CHUNK = 200  # envelopes per transaction when history expires: few, short SD writes
PRUNE_MAX_CHUNKS = 50  # per call: a huge expired history goes over several hourly runs
SCAN_CHUNK = 500  # cycle rows read at a time while planning an envelope
FREE_SHARE, FREE_MIN_PAGES = 0.25, 2048  # release free pages when ≥ 25 % and ≥ 8 MB of the file


class SqliteBuffer:
    def __init__(self, path: Path | str, *, gateway: str, sealer: Sealer,
                 max_bytes: int | None = None, full_policy: str = "drop_oldest",
                 clock: ClockSource = system_clock, seal_budget: int = SEAL_BUDGET,
                 live_s: float = LIVE_S) -> None:
        if full_policy not in FULL_POLICIES:
            raise ValueError(f"full_policy must be one of {FULL_POLICIES}")
        self._gateway, self._sealer, self._clock = gateway, sealer, clock
        self._max_bytes, self._policy = max_bytes, full_policy
        self._seal_budget, self._live_s = seal_budget, live_s
        self._inflight: set[int] = set()
        now = clock()
        try:
            opened = open_store(Path(path), now.wall_ms, now.boot_id)
            self._db = Db(opened.conn, Path(path), max_bytes)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the buffer at {path}: {exc}") from exc
        self._conn = self._db.conn
        self._epoch = opened.epoch
        for kind, message in opened.alarms:
            self.alarm(kind, message)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def path(self) -> Path:
        return self._db.path

    # -- add -----------------------------------------------------------------------------------
    def add(self, readings: Sequence[Reading], *, taken_ms: int, time_synced: bool) -> int:
        blob = json.dumps([r.as_wire() for r in readings], separators=(",", ":"), allow_nan=False)
        now = self._clock()
        try:
            if self._max_bytes is not None and not make_room(
                    self._db, max_bytes=self._max_bytes, need=len(blob) + 64, policy=self._policy,
                    inflight=self._inflight, now_ms=now.wall_ms):
                self._refuse(len(readings), now.wall_ms, "the buffer is at its cap "
                             f"({self._max_bytes} bytes) and the policy is block")
            with self._db.transaction() as conn:
                seq = int(self._db.meta("next_seq"))
                self._db.set_meta("next_seq", seq + 1)
                conn.execute("INSERT INTO cycles (seq, taken_ms, synced, n, readings, boot_id, mono_ms)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (seq, taken_ms, int(time_synced), len(readings), blob, now.boot_id,
                              now.mono_ms))
        except sqlite3.Error as exc:
            if sqlite_code(exc) == sqlite3.SQLITE_FULL:
                self._refuse(len(readings), now.wall_ms, f"the disk is full: {exc}")
            raise StoreError(f"cannot commit poll cycle: {exc}") from exc
        return seq

    def _refuse(self, readings: int, now_ms: int, why: str) -> NoReturn:
        """Give the refused cycle a seq and declare it as a gap, so the receiver sees it is
        missing; then raise BufferFull."""
        try:
            with self._db.transaction():
                seq = int(self._db.meta("next_seq"))
                self._db.set_meta("next_seq", seq + 1)
                self._db.record_gap(seq, seq, readings, "buffer_full", now_ms)
        except sqlite3.Error as exc:
            raise BufferFull(f"cycle refused ({why}); it could not even be declared: {exc}") from exc
        raise BufferFull(f"cycle {seq} refused: {why}")

    # -- begin / end ---------------------------------------------------------------------------
    def _plan(self, max_readings: int) -> list[tuple[int, int, int]]:
        """The next run of unsealed cycles to seal: consecutive seqs, one sync state, at most
        ``max_readings`` readings (a bigger single cycle goes alone). Reads metadata only."""
        run: list[tuple[int, int, int]] = []
        total, after = 0, 0
        while True:
            rows = self._conn.execute(
                "SELECT seq, synced, n FROM cycles WHERE envelope IS NULL AND seq > ? ORDER BY seq "
                "LIMIT ?", (after, SCAN_CHUNK)).fetchall()
            for row in rows:
                if run and (row[1] != run[0][1] or row[0] != run[-1][0] + 1
                            or total + row[2] > max_readings or len(run) >= max_readings):
                    return run
                run.append(row)
                total += row[2]
            if len(rows) < SCAN_CHUNK:
                return run
            after = rows[-1][0]

    def _seal_one(self, max_readings: int) -> int:
        run = self._plan(max_readings)
        if not run:
            return 0
        first, last = run[0][0], run[-1][0]
        rows = self._conn.execute("SELECT seq, readings, boot_id, mono_ms FROM cycles "
                                  "WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)).fetchall()
        # A gap rides in the first envelope sealed after it that starts above it (the wire
        # wants first <= last < seq); a refused cycle's gap waits for the next stored cycle.
        gaps = self._conn.execute("SELECT id, first, last, readings, reason FROM gaps "
                                  "WHERE envelope IS NULL AND last < ? ORDER BY first",
                                  (first,)).fetchall()
        head = self._db.meta("head") or None
        env = Envelope(self._gateway, self._epoch, first, last, head, bool(run[0][1]),
                       tuple(Cycle(seq, tuple(Reading(*r) for r in json.loads(blob)))
                             for seq, blob, _, _ in rows),
                       gaps=tuple(Gap(*g[1:]) for g in gaps), clock=self._clock())
        token = self._sealer(env)
        digest, total = envelope_hash(token), sum(r[2] for r in run)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO envelopes (seq, last, hash, token, readings, sealed_ms, boot_id, mono_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (first, last, digest, token, total, env.clock.wall_ms if env.clock else 0,
                 rows[-1][2], rows[-1][3]))
            conn.execute("UPDATE cycles SET envelope = ? WHERE seq BETWEEN ? AND ?", (first, first, last))
            conn.executemany("UPDATE gaps SET envelope = ? WHERE id = ?", [(first, g[0]) for g in gaps])
            self._db.set_meta("head", digest)
            self._db.set_meta("sealed_last", last)
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'sealed_count'")
        return max(total, 1)

    def begin(self, *, max_envelopes: int, max_readings: int) -> list[Sealed]:
        try:
            budget = self._seal_budget
            while budget > 0 and (done := self._seal_one(max_readings)):
                budget -= done
            now, limit = self._clock(), max_envelopes + len(self._inflight)
            ends = [[(seq, is_live(now, boot, mono, self._live_s)) for seq, boot, mono in
                     self._conn.execute("SELECT seq, boot_id, mono_ms FROM envelopes WHERE sent_ms "
                                        f"IS NULL ORDER BY seq {way} LIMIT ?", (limit,))]
                    for way in ("ASC", "DESC")]
            order = send_order(ends[0], ends[1], self._inflight, max_envelopes)
            found = {row[0]: Sealed(*row) for row in self._conn.execute(
                "SELECT seq, last, token, readings FROM envelopes WHERE seq IN "
                f"({','.join('?' * len(order))})", order)}
        except sqlite3.Error as exc:
            raise StoreError(f"cannot seal envelopes: {exc}") from exc
        self._inflight.update(order)
        return [found[seq] for seq in order]

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None:
        done = list(accepted)
        now = self._clock().wall_ms
        try:
            with self._db.transaction() as conn:
                conn.executemany("UPDATE envelopes SET sent_ms = ? WHERE seq = ?",
                                 [(now, seq) for seq in done])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record acknowledgements: {exc}") from exc
        self._inflight.difference_update(done)
        self._inflight.difference_update(rejected)

    # -- checkpoints and resends ----------------------------------------------------------------
    def chain_head(self) -> ChainHead | None:
        try:
            last, head, count = (self._db.meta(k) for k in ("sealed_last", "head", "sealed_count"))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the chain head: {exc}") from exc
        if int(last) < 0:
            return None
        return ChainHead(int(last), head or None, int(count))

    def sealed(self, seqs: Iterable[int]) -> list[Sealed]:
        wanted = list(dict.fromkeys(seqs))
        found: dict[int, Sealed] = {}
        try:
            for i in range(0, len(wanted), SCAN_CHUNK):
                chunk = wanted[i:i + SCAN_CHUNK]
                found.update((row[0], Sealed(*row)) for row in self._conn.execute(
                    "SELECT seq, last, token, readings FROM envelopes WHERE seq IN "
                    f"({','.join('?' * len(chunk))})", chunk))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read sealed envelopes: {exc}") from exc
        return [found[seq] for seq in wanted if seq in found]

    def recently_sent(self, *, since_ms: int, limit: int) -> list[int]:
        try:
            rows = self._conn.execute("SELECT seq FROM envelopes WHERE sent_ms >= ? ORDER BY seq "
                                      "DESC LIMIT ?", (since_ms, max(limit, 0))).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the sent history: {exc}") from exc
        return sorted(int(row[0]) for row in rows)

    # -- history, alarms, stats ----------------------------------------------------------------
    def prune_history(self, *, sent_before_ms: int) -> int:
        gone = 0
        try:
            for _ in range(PRUNE_MAX_CHUNKS):
                rows = self._conn.execute(
                    "SELECT seq, last FROM envelopes WHERE sent_ms < ? ORDER BY sent_ms LIMIT ?",
                    (sent_before_ms, PRUNE_CHUNK)).fetchall()
                if not rows:
                    break
                gone += delete_envelopes(self._db, rows)
            released = self._db.release_free_pages(FREE_SHARE, FREE_MIN_PAGES)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prune the sent history: {exc}") from exc
        if gone or released:
            log.info("history: %d sent cycle(s) expired, %d free page(s) released", gone, released)
        return gone

    def alarm(self, kind: str, message: str) -> None:
        log.error("ALARM %s: %s", kind, message)
        try:
            self._db.record_alarm(kind, message, self._clock().wall_ms)
        except sqlite3.Error as exc:
            log.error("cannot record the alarm in %s: %s", self._db.path, exc)

    def alarms(self) -> list[Alarm]:
        return [Alarm(*row) for row in self._conn.execute(
            "SELECT raised_ms, kind, message FROM alarms ORDER BY id")]

    def stats(self) -> BufferStats:
        from agent.buffer._inspect import buffer_stats

        return buffer_stats(self._conn, self._epoch, self._db.file_bytes(), self._max_bytes)

    def close(self) -> None:
        self._conn.close()
