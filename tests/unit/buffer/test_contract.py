"""One contract, every buffer: what the agent's delivery guarantees rest on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import Factory
from buffer_helpers import KEYS, SIGNER, T0, FakeClock, Recorder, reading, readings

from agent.buffer import Alarm, SqliteBuffer
from nengtan.envelope import ClockInfo, envelope_hash, open_envelope, seal

HOUR = 3600.0


def _chain_holds(tokens: dict[int, str]) -> bool:
    """Every envelope's prev is the hash of the envelope sealed before it (seq order)."""
    ordered = [tokens[seq] for seq in sorted(tokens)]
    prevs = [open_envelope(t, KEYS)[0].prev for t in ordered]
    return prevs == [None] + [envelope_hash(t) for t in ordered[:-1]]


def test_sequence_numbers_start_at_one_and_have_no_gaps(make: Factory) -> None:
    buffer = make()
    assert [buffer.add([reading(i)], taken_ms=i, time_synced=True) for i in range(5)] == [1, 2, 3, 4, 5]


def test_begin_seals_cycles_into_verifiable_chained_envelopes(make: Factory) -> None:
    buffer = make()
    for i in range(6):
        buffer.add([reading(i), reading(i + 100)], taken_ms=i, time_synced=True)
    batch = buffer.begin(max_envelopes=10, max_readings=4)
    assert [(s.seq, s.last, s.readings) for s in batch] == [(1, 2, 4), (3, 4, 4), (5, 6, 4)]
    assert _chain_holds({s.seq: s.token for s in batch})


def test_in_flight_envelopes_are_not_handed_out_twice(make: Factory) -> None:
    buffer = make()
    for i in range(3):
        buffer.add([reading(i)], taken_ms=i, time_synced=True)
    first = buffer.begin(max_envelopes=1, max_readings=1)
    second = buffer.begin(max_envelopes=5, max_readings=1)
    assert [s.seq for s in first] == [1] and [s.seq for s in second] == [2, 3]
    assert buffer.begin(max_envelopes=5, max_readings=1) == []


def test_rejected_envelopes_come_back_byte_identical(make: Factory) -> None:
    buffer = make()
    buffer.add([reading(1)], taken_ms=1, time_synced=True)
    [sent] = buffer.begin(max_envelopes=1, max_readings=10)
    buffer.end([], [sent.seq])
    [again] = buffer.begin(max_envelopes=1, max_readings=10)
    assert again == sent


def test_accepted_envelopes_are_never_handed_out_again(make: Factory) -> None:
    buffer = make()
    buffer.add([reading(1)], taken_ms=1, time_synced=True)
    [sent] = buffer.begin(max_envelopes=1, max_readings=10)
    buffer.end([sent.seq], [])
    assert buffer.begin(max_envelopes=1, max_readings=10) == []
    stats = buffer.stats()
    assert (stats.unsent_cycles, stats.unsent_readings, stats.oldest_unsent_ms) == (0, 0, None)


def test_unsynced_cycles_never_share_an_envelope_with_synced_ones(make: Factory) -> None:
    buffer = make()
    buffer.add([reading(1)], taken_ms=1, time_synced=False)
    buffer.add([reading(2)], taken_ms=2, time_synced=False)
    buffer.add([reading(3)], taken_ms=3, time_synced=True)
    batch = buffer.begin(max_envelopes=5, max_readings=100)
    flags = [open_envelope(s.token, KEYS)[0].time_synced for s in batch]
    assert [(s.seq, s.last) for s in batch] == [(1, 2), (3, 3)] and flags == [False, True]


def test_stats_count_what_is_still_unsent(make: Factory) -> None:
    buffer = make()
    for i in range(4):
        buffer.add([reading(i), reading(i)], taken_ms=1000 + i, time_synced=True)
    [first, *_] = buffer.begin(max_envelopes=5, max_readings=2)
    buffer.end([first.seq], [])
    buffer.add([reading(9)], taken_ms=2000, time_synced=True)
    stats = buffer.stats()
    assert (stats.cycles, stats.unsent_cycles, stats.unsent_readings) == (5, 4, 7)
    assert (stats.oldest_unsent_ms, stats.last_seq) == (1001, 5)
    assert (stats.unsent_envelopes, stats.unsealed_cycles) == (3, 1)


def test_every_envelope_carries_the_clocks_at_sealing(make: Factory) -> None:
    clock, recorder = FakeClock(boot="3db5c670-47d3", mono_ms=42_000, wall_ms=T0), Recorder()
    buffer = make(clock=clock, sealer=recorder)
    buffer.add([reading(1)], taken_ms=T0, time_synced=True)
    clock.advance(7)
    buffer.begin(max_envelopes=1, max_readings=10)
    assert recorder.envelopes[0].clock == ClockInfo("3db5c670-47d3", 49_000, T0 + 7_000)


def test_an_empty_window_still_seals_but_hands_out_nothing(make: Factory) -> None:
    buffer = make()
    buffer.add([reading(1)], taken_ms=1, time_synced=True)
    assert buffer.begin(max_envelopes=0, max_readings=10) == []
    assert buffer.stats().unsealed_cycles == 0
    assert [s.seq for s in buffer.begin(max_envelopes=1, max_readings=10)] == [1]


def test_sealing_is_bounded_per_call(make: Factory) -> None:
    buffer = make(seal_budget=4)
    for i in range(10):
        buffer.add([reading(i)], taken_ms=i, time_synced=True)
    assert len(buffer.begin(max_envelopes=10, max_readings=1)) == 4
    assert buffer.stats().unsealed_cycles == 6
    assert [s.seq for s in buffer.begin(max_envelopes=10, max_readings=1)] == [5, 6, 7, 8]


def test_a_drain_sends_live_envelopes_newest_first_then_the_oldest(make: Factory) -> None:
    clock = FakeClock()
    buffer = make(clock=clock)
    for i in range(6):  # the backlog, committed while the uplink was down
        buffer.add([reading(i)], taken_ms=clock.wall_ms, time_synced=True)
    clock.advance(2 * HOUR)
    for i in range(6, 8):  # live cycles
        buffer.add([reading(i)], taken_ms=clock.wall_ms, time_synced=True)
        clock.advance(10)
    first = buffer.begin(max_envelopes=3, max_readings=2)
    assert [(s.seq, s.last) for s in first] == [(7, 8), (1, 2), (3, 4)]
    buffer.add([reading(8)], taken_ms=clock.wall_ms, time_synced=True)  # seq 9, live
    assert [s.seq for s in buffer.begin(max_envelopes=2, max_readings=2)] == [9, 5]
    tokens = {s.seq: s.token for s in first}
    # The chain follows seq (sealing) order whatever the send order.
    assert open_envelope(tokens[7], KEYS)[0].prev != envelope_hash(tokens[3])
    assert open_envelope(tokens[3], KEYS)[0].prev == envelope_hash(tokens[1])


def test_without_a_backlog_envelopes_leave_in_seq_order(make: Factory) -> None:
    clock = FakeClock()
    buffer = make(clock=clock)
    for i in range(4):
        buffer.add([reading(i)], taken_ms=clock.wall_ms, time_synced=True)
        clock.advance(10)
    assert [s.seq for s in buffer.begin(max_envelopes=2, max_readings=1)] == [1, 2]


def test_a_wall_clock_stepped_back_or_a_1970_boot_changes_nothing_about_seq_or_dedupe(
        make: Factory) -> None:
    clock = FakeClock()
    buffer = make(clock=clock)
    seqs = [buffer.add([reading(0)], taken_ms=clock.wall_ms, time_synced=True)]
    clock.wall_ms -= int(3 * HOUR * 1000)  # NTP steps the clock back 3 h
    seqs.append(buffer.add([reading(1)], taken_ms=clock.wall_ms, time_synced=True))
    clock.reboot("boot-b", wall_ms=1_000)  # power cut; no RTC: 1970-01-01T00:00:01Z
    seqs += [buffer.add([reading(i)], taken_ms=clock.wall_ms, time_synced=False) for i in (2, 3)]
    assert seqs == [1, 2, 3, 4]
    batch = buffer.begin(max_envelopes=10, max_readings=1)
    assert sorted(s.seq for s in batch) == [1, 2, 3, 4]
    assert _chain_holds({s.seq: s.token for s in batch})
    buffer.end([], [s.seq for s in batch])
    clock.wall_ms = T0  # the clock syncs: a resend is still byte-identical (dedupe by seq holds)
    assert sorted(buffer.begin(max_envelopes=10, max_readings=1), key=lambda s: s.seq) == \
        sorted(batch, key=lambda s: s.seq)


def test_pruning_deletes_only_sent_history_older_than_the_horizon(make: Factory) -> None:
    clock = FakeClock()
    buffer = make(clock=clock)
    for i in range(3):
        buffer.add([reading(i)], taken_ms=clock.wall_ms, time_synced=True)
    one, two, _ = buffer.begin(max_envelopes=3, max_readings=1)
    buffer.end([one.seq], [])
    clock.advance(48 * HOUR)
    buffer.end([two.seq], [])
    assert buffer.prune_history(sent_before_ms=clock.wall_ms - int(24 * HOUR * 1000)) == 1
    stats = buffer.stats()
    assert (stats.cycles, stats.unsent_cycles, stats.last_seq) == (2, 1, 3)


def test_the_chain_survives_pruning_its_newest_envelope(make: Factory) -> None:
    buffer = make()
    buffer.add([reading(1)], taken_ms=1, time_synced=True)
    [one] = buffer.begin(max_envelopes=1, max_readings=1)
    buffer.end([one.seq], [])
    assert buffer.prune_history(sent_before_ms=T0 + 1) == 1
    buffer.add([reading(2)], taken_ms=2, time_synced=True)
    [two] = buffer.begin(max_envelopes=1, max_readings=1)
    assert two.seq == 2 and open_envelope(two.token, KEYS)[0].prev == envelope_hash(one.token)


def test_alarms_are_kept_in_the_order_raised(make: Factory) -> None:
    clock = FakeClock()
    buffer = make(clock=clock)
    buffer.alarm("buffer_full", "refusing")
    clock.advance(1)
    buffer.alarm("buffer_full_ended", "storing again")
    assert buffer.alarms() == [Alarm(T0, "buffer_full", "refusing"),
                               Alarm(T0 + 1000, "buffer_full_ended", "storing again")]


# -- what only a durable buffer can promise ------------------------------------------------------

def test_committed_cycles_and_the_chain_survive_a_restart(tmp_path: Path) -> None:
    sealer = lambda env: seal(SIGNER, env)
    buffer = SqliteBuffer(tmp_path / "b.db", gateway="gw", sealer=sealer)
    buffer.add([reading(1)], taken_ms=1, time_synced=True)
    [first] = buffer.begin(max_envelopes=1, max_readings=10)  # in flight when the process dies
    buffer.close()
    reopened = SqliteBuffer(tmp_path / "b.db", gateway="gw", sealer=sealer)
    assert reopened.add([reading(2)], taken_ms=2, time_synced=True) == 2
    batch = reopened.begin(max_envelopes=5, max_readings=1)
    assert batch[0] == first  # sent again, byte-identical
    assert open_envelope(batch[1].token, KEYS)[0].prev == envelope_hash(first.token)
    assert reopened.alarms() == []
    reopened.close()


def test_the_store_runs_wal_with_full_sync_and_incremental_vacuum(tmp_path: Path) -> None:
    buffer = SqliteBuffer(tmp_path / "b.db", gateway="gw", sealer=lambda env: seal(SIGNER, env))
    buffer.add(readings(3), taken_ms=1, time_synced=True)
    conn = buffer._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    buffer.close()
    check = sqlite3.connect(tmp_path / "b.db")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 1
