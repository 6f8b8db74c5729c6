"""What checkpoints and one-way resends read from the buffer: the chain head, stored envelopes by
seq, the recently sent ones; and the technician's export of stored envelopes."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import Factory
from buffer_helpers import FakeClock, Recorder, reading, readings

from agent.buffer import Buffer, ChainHead, SqliteBuffer, export_envelopes
from nengtan.envelope import envelope_hash
from nengtan.errors import StoreError



def _fill(buffer: Buffer, cycles: int, per_envelope: int = 2) -> list[str]:
    for i in range(cycles):
        buffer.add([reading(i)], taken_ms=i, time_synced=True)
    return [s.token for s in buffer.begin(max_envelopes=1000, max_readings=per_envelope)]


def test_the_chain_head_starts_empty_and_follows_every_seal(make: Factory) -> None:
    buffer = make()
    assert buffer.chain_head() == ChainHead(0, None, 0)
    tokens = _fill(buffer, 5)  # envelopes 1-2, 3-4, 5
    assert buffer.chain_head() == ChainHead(5, envelope_hash(tokens[-1]), 3)
    buffer.add([reading(9)], taken_ms=9, time_synced=True)
    assert buffer.chain_head() == ChainHead(5, envelope_hash(tokens[-1]), 3)  # unsealed: not yet
    stats = buffer.stats()
    assert (stats.sealed_last, stats.sealed_envelopes) == (5, 3)


def test_stored_envelopes_come_back_by_seq_byte_identical_sent_or_not(make: Factory) -> None:
    buffer = make()
    tokens = _fill(buffer, 6)
    buffer.end([1, 3], [])
    again = buffer.sealed([5, 1, 99, 3, 5])
    assert [(s.seq, s.last) for s in again] == [(5, 6), (1, 2), (3, 4)]
    assert [s.token for s in again] == [tokens[2], tokens[0], tokens[1]]
    assert buffer.begin(max_envelopes=10, max_readings=2) == []  # in flight stays in flight


def test_recently_sent_finds_what_was_sent_since_a_wall_clock_time(make: Factory) -> None:
    clock = FakeClock()
    buffer = make(clock=clock)
    _fill(buffer, 6)
    buffer.end([1], [])
    clock.advance(60)
    since = clock.wall_ms
    buffer.end([3, 5], [])
    assert buffer.recently_sent(since_ms=since, limit=10) == [3, 5]
    assert buffer.recently_sent(since_ms=since, limit=1) == [5]
    assert buffer.recently_sent(since_ms=0, limit=10) == [1, 3, 5]


def test_the_chain_head_survives_a_restart_and_history_expiry(tmp_path: Path) -> None:
    clock = FakeClock()
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=Recorder(), clock=clock)
    tokens = _fill(buffer, 6)
    buffer.end([1, 3, 5], [])
    clock.advance(3600)
    assert buffer.prune_history(sent_before_ms=clock.wall_ms) == 6
    assert buffer.sealed([1, 3, 5]) == []
    buffer.close()
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=Recorder(), clock=clock)
    assert buffer.chain_head() == ChainHead(6, envelope_hash(tokens[-1]), 3)
    buffer.close()


def _v2_store(path: Path, *, head: str, envelopes: list[tuple[int, int, str]]) -> None:
    """A store as schema v2 left it (no sealed_last / sealed_count)."""
    buffer = SqliteBuffer(path, gateway="gw", sealer=Recorder(), clock=FakeClock())
    buffer.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DELETE FROM meta WHERE key IN ('sealed_last', 'sealed_count')")
    db.execute("UPDATE meta SET value = ? WHERE key = 'head'", (head,))
    db.executemany("INSERT INTO envelopes (seq, last, hash, token, readings) VALUES (?, ?, ?, 't', 1)",
                   envelopes)
    db.execute("PRAGMA user_version = 2")
    db.close()


def test_a_v2_store_learns_its_chain_head_from_its_envelopes(tmp_path: Path) -> None:
    _v2_store(tmp_path / "buffer.db", head="H3", envelopes=[(1, 2, "H1"), (3, 5, "H2"), (6, 6, "H3")])
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=Recorder(), clock=FakeClock())
    assert buffer.chain_head() == ChainHead(6, "H3", 3)
    buffer.close()


def test_a_v2_store_whose_head_envelope_is_gone_says_nothing_until_the_next_seal(
        tmp_path: Path) -> None:
    _v2_store(tmp_path / "buffer.db", head="GONE", envelopes=[(1, 2, "H1")])
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=Recorder(), clock=FakeClock())
    assert buffer.chain_head() is None  # a checkpoint must not guess
    db = sqlite3.connect(tmp_path / "buffer.db", isolation_level=None)
    db.execute("UPDATE meta SET value = '8' WHERE key = 'next_seq'")
    db.close()
    buffer.add([reading(8)], taken_ms=8, time_synced=True)
    [sealed] = buffer.begin(max_envelopes=1, max_readings=10)
    assert buffer.chain_head() == ChainHead(8, envelope_hash(sealed.token), 2)
    buffer.close()


def _exported(path: Path, first: int, last: int, **kw: Any) -> tuple[list[str], Any]:
    out = io.StringIO()
    report = export_envelopes(path, first, last, out, **kw)
    return out.getvalue().splitlines(), report


def test_export_writes_every_envelope_holding_a_wanted_cycle_as_signed(tmp_path: Path) -> None:
    clock = FakeClock()
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=Recorder(), clock=clock)
    for i in range(10):
        buffer.add(readings(2, i), taken_ms=i, time_synced=True)
    tokens = {s.seq: s.token for s in buffer.begin(max_envelopes=100, max_readings=6)}
    assert sorted(tokens) == [1, 4, 7, 10]  # 1-3, 4-6, 7-9, 10
    buffer.end(list(tokens), [])  # sent or not makes no difference
    lines, report = _exported(tmp_path / "buffer.db", 5, 8)
    assert lines == [tokens[4], tokens[7]]  # whole envelopes: a signed one cannot be cut
    assert (report.epoch, report.envelopes, report.first, report.last) == (1, 2, 4, 9)
    assert report.not_stored == []
    buffer.add([reading(11)], taken_ms=11, time_synced=True)  # committed, not sealed yet
    lines, report = _exported(tmp_path / "buffer.db", 9, 14)
    assert lines == [tokens[7], tokens[10]] and report.not_stored == [(11, 14)]
    buffer.close()


def test_export_lists_what_the_buffer_no_longer_holds(tmp_path: Path) -> None:
    clock = FakeClock()
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=Recorder(), clock=clock)
    _fill(buffer, 8)  # 1-2, 3-4, 5-6, 7-8
    buffer.end([1, 3], [])
    clock.advance(3600)
    buffer.prune_history(sent_before_ms=clock.wall_ms)  # 1-4 expired
    buffer.close()
    lines, report = _exported(tmp_path / "buffer.db", 2, 6)
    assert len(lines) == 1 and report.not_stored == [(2, 4)] and (report.first, report.last) == (5, 6)
    lines, report = _exported(tmp_path / "buffer.db", 1, 3)
    assert lines == [] and report.envelopes == 0 and report.not_stored == [(1, 3)]


def test_export_refuses_another_epoch_and_a_missing_buffer(tmp_path: Path) -> None:
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=Recorder(), clock=FakeClock())
    _fill(buffer, 2)
    buffer.close()
    with pytest.raises(StoreError, match="holds epoch 1, not 2"):
        export_envelopes(tmp_path / "buffer.db", 1, 2, io.StringIO(), epoch=2)
    with pytest.raises(StoreError, match="no buffer at"):
        export_envelopes(tmp_path / "nope.db", 1, 2, io.StringIO())
