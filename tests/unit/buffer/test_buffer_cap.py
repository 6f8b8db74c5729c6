"""The disk cap (SQLite only: the memory buffer has no disk). Sent history goes first; then
drop_oldest drops the oldest unsent data and declares it as a signed gap, block refuses new
cycles and declares them; every cycle is accounted for."""

from __future__ import annotations

from pathlib import Path

import pytest
from buffer_helpers import KEYS, FakeClock, Recorder, readings

from agent.buffer import BufferFull, SqliteBuffer
from agent.buffer import _sqlite as sqlite_module
from nengtan.envelope import Gap, open_envelope

CAP = 256 * 1024
PER_CYCLE = 20  # readings


def _buffer(path: Path, policy: str = "drop_oldest", recorder: Recorder | None = None,
            cap: int = CAP) -> SqliteBuffer:
    buffer = SqliteBuffer(path / "buffer.db", gateway="gw", sealer=recorder or Recorder(),
                          max_bytes=cap, full_policy=policy, clock=FakeClock())
    buffer._conn.execute("PRAGMA synchronous=OFF")  # only to keep the test fast
    return buffer


def _add(buffer: SqliteBuffer, i: int) -> int:
    return buffer.add(readings(PER_CYCLE, i * PER_CYCLE), taken_ms=i, time_synced=True)


def _fill(buffer: SqliteBuffer, start: int, until_dropped: bool = True, limit: int = 3000) -> int:
    """Add cycles until the buffer has dropped something; return the next index."""
    i = start
    while i < limit and not (until_dropped and buffer.stats().dropped_cycles):
        _add(buffer, i)
        i += 1
    return i


def _pending(buffer: SqliteBuffer) -> list[Gap]:
    return [Gap(*r) for r in buffer._conn.execute(
        "SELECT first, last, readings, reason FROM gaps WHERE envelope IS NULL ORDER BY first")]


def _assert_accounted(buffer: SqliteBuffer, delivered: set[int] = frozenset()) -> None:
    """Every seq handed out is stored, delivered or declared dropped, exactly once."""
    stored = [r[0] for r in buffer._conn.execute("SELECT seq FROM cycles")]
    dropped = [seq for first, last in buffer._conn.execute("SELECT first, last FROM gaps")
               for seq in range(first, last + 1)]
    gone = sorted(delivered - set(stored))
    assert sorted(stored + dropped + gone) == list(range(1, buffer.stats().last_seq + 1))
    assert len(dropped) == buffer.stats().dropped_cycles


def test_sent_history_goes_first_and_nothing_unsent_is_touched(tmp_path: Path) -> None:
    buffer = _buffer(tmp_path)
    for i in range(400):
        _add(buffer, i)
        sent = buffer.begin(max_envelopes=10, max_readings=100)
        buffer.end([s.seq for s in sent], [])
    assert buffer.stats().cycles < 400  # history went...
    assert buffer.stats().dropped_cycles == 0 and _pending(buffer) == []  # ...nothing else
    assert buffer.stats().db_bytes <= CAP * 1.1
    buffer.close()


def test_drop_oldest_drops_whole_unsent_envelopes_and_seals_a_signed_gap(tmp_path: Path) -> None:
    recorder = Recorder()
    buffer = _buffer(tmp_path, recorder=recorder)
    for i in range(100):
        _add(buffer, i)
    batch = buffer.begin(max_envelopes=100, max_readings=5 * PER_CYCLE)  # 20 envelopes of 5
    buffer.end([], [s.seq for s in batch])  # the broker refused them: sealed, unsent
    _fill(buffer, 100)
    [gap] = _pending(buffer)
    assert (gap.first, gap.reason) == (1, "disk_cap") and gap.last % 5 == 0  # whole envelopes
    assert gap.readings == gap.last * PER_CYCLE
    _assert_accounted(buffer)
    sent = buffer.begin(max_envelopes=1000, max_readings=1000)
    carrier = next(e for e in recorder.envelopes if e.gaps)
    assert carrier.gaps == (gap,) and carrier.seq > gap.last
    token = next(s.token for s in sent if s.seq == carrier.seq)
    assert open_envelope(token, KEYS)[0].gaps == (gap,)  # signed, on the wire
    assert _pending(buffer) == []
    buffer.close()


def test_then_the_oldest_unsealed_cycles_go_as_one_declared_run(tmp_path: Path) -> None:
    buffer = _buffer(tmp_path)
    end = _fill(buffer, 0)
    end = _fill(buffer, end, until_dropped=False, limit=end + 300)
    [gap] = _pending(buffer)  # consecutive drops merge into one gap
    stored = [r[0] for r in buffer._conn.execute("SELECT seq FROM cycles ORDER BY seq")]
    assert gap.first == 1 and stored[0] == gap.last + 1 and stored[-1] == end
    assert stored == list(range(stored[0], end + 1))
    assert buffer.stats().db_bytes <= CAP * 1.1
    _assert_accounted(buffer)
    buffer.close()


def test_envelopes_in_flight_are_never_dropped(tmp_path: Path) -> None:
    buffer = _buffer(tmp_path)
    for i in range(50):
        _add(buffer, i)
    flying = buffer.begin(max_envelopes=100, max_readings=10 * PER_CYCLE)  # never acknowledged
    _fill(buffer, 50)
    assert {s.seq for s in flying} <= {r[0] for r in buffer._conn.execute("SELECT seq FROM envelopes")}
    assert _pending(buffer)[0].first == 51
    buffer.close()


def test_gaps_a_dropped_envelope_carried_are_declared_again(tmp_path: Path) -> None:
    recorder = Recorder()
    buffer = _buffer(tmp_path, recorder=recorder)
    end = _fill(buffer, 0)  # drops unsealed cycles: gap pending
    [first_gap] = _pending(buffer)
    batch = buffer.begin(max_envelopes=1, max_readings=5 * PER_CYCLE)  # seals it into an envelope
    assert recorder.envelopes[0].gaps == (first_gap,)
    buffer.end([], [s.seq for s in batch])
    _fill(buffer, end, until_dropped=False, limit=end + 200)  # that envelope is dropped too
    assert _pending(buffer)[0].first == 1  # the first gap is pending again (merged or not)
    assert sum(g.readings for g in _pending(buffer)) == buffer.stats().dropped_readings
    buffer.close()


def test_block_refuses_new_cycles_declares_them_and_keeps_the_old_ones(tmp_path: Path) -> None:
    recorder = Recorder()
    buffer = _buffer(tmp_path, "block", recorder)
    i = 0
    with pytest.raises(BufferFull):
        while True:
            _add(buffer, i)
            i += 1
    stored = buffer.stats().cycles
    with pytest.raises(BufferFull):
        _add(buffer, i + 1)
    assert buffer.stats().cycles == stored and buffer.stats().dropped_cycles == 2
    assert _pending(buffer) == [Gap(stored + 1, stored + 2, 2 * PER_CYCLE, "buffer_full")]
    # The uplink comes back: what was kept is sent, history makes room, cycles are stored again.
    delivered: set[int] = set()
    while batch := buffer.begin(max_envelopes=50, max_readings=10 * PER_CYCLE):
        buffer.end([s.seq for s in batch], [])
        delivered.update(seq for s in batch for seq in range(s.seq, s.last + 1))
    assert not any(e.gaps for e in recorder.envelopes)  # the gap waits for a later cycle
    assert _add(buffer, i + 2) == stored + 3
    buffer.begin(max_envelopes=5, max_readings=100)
    assert recorder.envelopes[-1].gaps == (Gap(stored + 1, stored + 2, 2 * PER_CYCLE, "buffer_full"),)
    _assert_accounted(buffer, delivered)
    buffer.close()


def test_pending_gaps_survive_a_restart(tmp_path: Path) -> None:
    buffer = _buffer(tmp_path)
    end = _fill(buffer, 0)
    gaps = _pending(buffer)
    buffer.close()
    recorder = Recorder()
    reopened = _buffer(tmp_path, recorder=recorder)
    assert _pending(reopened) == gaps and reopened.stats().dropped_cycles == gaps[0].last
    _add(reopened, end)
    reopened.begin(max_envelopes=1, max_readings=10_000)
    assert recorder.envelopes[0].gaps == tuple(gaps)
    reopened.close()


def test_expired_history_gives_its_pages_back_only_when_many_are_free(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "FREE_MIN_PAGES", 16)
    buffer = _buffer(tmp_path, cap=64 * 1024 * 1024)
    for i in range(300):
        _add(buffer, i)
    while batch := buffer.begin(max_envelopes=50, max_readings=5 * PER_CYCLE):
        buffer.end([s.seq for s in batch], [])
    pages = buffer._conn.execute("PRAGMA page_count").fetchone()[0]
    assert buffer.prune_history(sent_before_ms=buffer._clock().wall_ms + 1) == 300
    assert buffer._conn.execute("PRAGMA page_count").fetchone()[0] < pages / 4
    buffer.close()


def test_a_really_full_disk_raises_buffer_full_instead_of_crashing_the_loop(tmp_path: Path) -> None:
    buffer = _buffer(tmp_path, cap=64 * 1024 * 1024)
    _add(buffer, 0)
    pages = buffer._conn.execute("PRAGMA page_count").fetchone()[0]
    buffer._conn.execute(f"PRAGMA max_page_count = {pages + 4}")  # the partition fills up
    with pytest.raises(BufferFull, match="disk is full"):
        for i in range(1, 200):
            _add(buffer, i)
    buffer.close()
