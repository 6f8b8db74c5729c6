"""The disk cap: what goes, in which order, when a new cycle would not fit.

1. Sent history, oldest first, whole envelopes with their cycles (it was delivered; it is kept
   only for technicians). When history must go, a little more than needed goes at once (5 % of
   the cap), so the next cycles do not each pay for a delete.
2. Then, a WAL checkpoint: a fat WAL is never a reason to drop data.
3. Policy "block": nothing unsent is touched; the caller refuses the cycle.
   Policy "drop_oldest": the oldest sealed-but-unsent envelopes, as units (one is signed; it
   cannot be cut), skipping those in flight; then the oldest unsealed cycles, no more than
   needed. Every drop is recorded as a Gap in the same transaction, to be sealed, signed, into
   the next envelope; gaps an envelope carried go back to pending when it is dropped.

Each step is its own small transaction. The cap is checked against the pages in use plus the
WAL (``Db.used_bytes``): deleted rows leave free pages that the next inserts reuse before the file
grows, so at the cap the file stops growing without any VACUUM.

Why incremental auto-vacuum and no periodic VACUUM: a VACUUM rewrites every live page of the
store (hundreds of MB of SD-card writes each time) and needs up to twice the store's size free
while it runs; at the cap it would only give back pages that new cycles take again minutes
later. New stores use ``auto_vacuum = INCREMENTAL`` instead, and the hourly history job gives
free pages back (``PRAGMA incremental_vacuum``, bounded per run) only when they are at least a
quarter of the file and 8 MB, e.g. after a long backlog was sent and its history expired; a
store from before auto-vacuum is converted by one VACUUM at that moment, the only one it gets.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.buffer._db import Db

HISTORY_SLACK = 0.05  # share of the cap freed at once when sent history has to go
SENT_CHUNK = 100  # envelopes per transaction when history goes
GAP_REASON = "disk_cap"


def delete_envelopes(db: Db, rows: Sequence[tuple[int, int]]) -> int:
    """Delete envelopes (seq, last) with their cycles and delivered gaps; return cycles deleted."""
    gone = 0
    with db.transaction() as conn:
        for seq, last in rows:
            gone += conn.execute("DELETE FROM cycles WHERE seq BETWEEN ? AND ?", (seq, last)).rowcount
            conn.execute("DELETE FROM gaps WHERE envelope = ?", (seq,))
            conn.execute("DELETE FROM envelopes WHERE seq = ?", (seq,))
    return gone


def _delete_sent(db: Db) -> bool:
    rows = db.conn.execute("SELECT seq, last FROM envelopes WHERE sent_ms IS NOT NULL "
                           "ORDER BY seq LIMIT ?", (SENT_CHUNK,)).fetchall()
    if rows:
        delete_envelopes(db, rows)
    return bool(rows)


def _drop_sealed(db: Db, inflight: set[int], now_ms: int) -> bool:
    skip = ",".join(str(int(s)) for s in inflight) or "-1"  # (NOT IN (NULL) matches nothing)
    row = db.conn.execute(f"SELECT seq, last, readings FROM envelopes WHERE sent_ms IS NULL "
                          f"AND seq NOT IN ({skip}) ORDER BY seq LIMIT 1").fetchone()
    if row is None:
        return False
    seq, last, readings = row
    with db.transaction() as conn:
        conn.execute("DELETE FROM cycles WHERE seq BETWEEN ? AND ?", (seq, last))
        conn.execute("UPDATE gaps SET envelope = NULL WHERE envelope = ?", (seq,))
        conn.execute("DELETE FROM envelopes WHERE seq = ?", (seq,))
        db.record_gap(seq, last, readings, GAP_REASON, now_ms)
    return True


def _drop_unsealed(db: Db, need: int, now_ms: int) -> bool:
    rows = db.conn.execute("SELECT seq, n, length(readings) FROM cycles WHERE envelope IS NULL "
                           "ORDER BY seq LIMIT 500").fetchall()
    if not rows:
        return False
    run, size, readings = [rows[0]], rows[0][2], rows[0][1]
    for row in rows[1:]:
        # Free about what the new cycle needs, within one run of consecutive seqs.
        if size >= max(need, db.page_size) or row[0] != run[-1][0] + 1:
            break
        run.append(row)
        size += row[2]
        readings += row[1]
    with db.transaction() as conn:
        conn.execute("DELETE FROM cycles WHERE seq BETWEEN ? AND ?", (run[0][0], run[-1][0]))
        db.record_gap(run[0][0], run[-1][0], readings, GAP_REASON, now_ms)
    return True


def make_room(db: Db, *, max_bytes: int, need: int, policy: str, inflight: set[int],
              now_ms: int) -> bool:
    """Make ``need`` more bytes fit under ``max_bytes``; False if they do not and the policy is
    "block". Under "drop_oldest" the answer is always True: if even that cannot free enough
    (everything left is in flight), the cycle is stored over the cap rather than lost."""
    if db.used_bytes() + need <= max_bytes:
        return True
    low = max_bytes - max(need, int(max_bytes * HISTORY_SLACK))
    while db.used_bytes() > low and _delete_sent(db):
        pass
    if db.used_bytes() + need <= max_bytes:
        return True
    db.checkpoint()
    if db.used_bytes() + need <= max_bytes:
        return True
    if policy == "block":
        return False
    while db.used_bytes() + need > max_bytes and (
            _drop_sealed(db, inflight, now_ms) or _drop_unsealed(db, need, now_ms)):
        pass
    return True
