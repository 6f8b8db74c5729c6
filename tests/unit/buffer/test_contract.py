"""One contract, every buffer: what the agent's delivery guarantees rest on."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.buffer import Buffer, MemoryBuffer, SqliteBuffer
from nengtan.envelope import Reading, envelope_hash, open_envelope, seal
from nengtan.jws import Ed25519Signer

SIGNER = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
KEYS = {SIGNER.kid: SIGNER.verification_key()}
Factory = Callable[[], Buffer]


def _reading(i: int) -> Reading:
    return Reading("main", "active_energy_import", 1_763_769_600_000 + i, 100.0 + i, "good")


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[Buffer] = []

    def factory() -> Buffer:
        sealer = lambda env: seal(SIGNER, env)
        buffer: Buffer = (MemoryBuffer(gateway="gw", sealer=sealer) if request.param == "memory"
                          else SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=sealer))
        opened.append(buffer)
        return buffer

    yield factory
    for buffer in opened:
        buffer.close()


def test_sequence_numbers_start_at_one_and_have_no_gaps(make: Factory) -> None:
    buffer = make()
    assert [buffer.add([_reading(i)], taken_ms=i, time_synced=True) for i in range(5)] == [1, 2, 3, 4, 5]


def test_begin_seals_cycles_into_verifiable_chained_envelopes(make: Factory) -> None:
    buffer = make()
    for i in range(6):
        buffer.add([_reading(i), _reading(i + 100)], taken_ms=i, time_synced=True)
    batch = buffer.begin(max_envelopes=10, max_readings=4)
    assert [(s.seq, s.last, s.readings) for s in batch] == [(1, 2, 4), (3, 4, 4), (5, 6, 4)]
    envelopes = [open_envelope(s.token, KEYS)[0] for s in batch]
    assert envelopes[0].prev is None
    assert envelopes[1].prev == envelope_hash(batch[0].token)
    assert envelopes[2].prev == envelope_hash(batch[1].token)


def test_in_flight_envelopes_are_not_handed_out_twice(make: Factory) -> None:
    buffer = make()
    for i in range(3):
        buffer.add([_reading(i)], taken_ms=i, time_synced=True)
    first = buffer.begin(max_envelopes=1, max_readings=1)
    second = buffer.begin(max_envelopes=5, max_readings=1)
    assert [s.seq for s in first] == [1] and [s.seq for s in second] == [2, 3]
    assert buffer.begin(max_envelopes=5, max_readings=1) == []


def test_rejected_envelopes_come_back_byte_identical(make: Factory) -> None:
    buffer = make()
    buffer.add([_reading(1)], taken_ms=1, time_synced=True)
    [sent] = buffer.begin(max_envelopes=1, max_readings=10)
    buffer.end([], [sent.seq])
    [again] = buffer.begin(max_envelopes=1, max_readings=10)
    assert again == sent


def test_accepted_envelopes_are_never_handed_out_again(make: Factory) -> None:
    buffer = make()
    buffer.add([_reading(1)], taken_ms=1, time_synced=True)
    [sent] = buffer.begin(max_envelopes=1, max_readings=10)
    buffer.end([sent.seq], [])
    assert buffer.begin(max_envelopes=1, max_readings=10) == []
    stats = buffer.stats()
    assert (stats.unsent_cycles, stats.unsent_readings, stats.oldest_unsent_ms) == (0, 0, None)


def test_unsynced_cycles_never_share_an_envelope_with_synced_ones(make: Factory) -> None:
    buffer = make()
    buffer.add([_reading(1)], taken_ms=1, time_synced=False)
    buffer.add([_reading(2)], taken_ms=2, time_synced=False)
    buffer.add([_reading(3)], taken_ms=3, time_synced=True)
    batch = buffer.begin(max_envelopes=5, max_readings=100)
    flags = [open_envelope(s.token, KEYS)[0].time_synced for s in batch]
    assert [(s.seq, s.last) for s in batch] == [(1, 2), (3, 3)] and flags == [False, True]


def test_stats_count_what_is_still_unsent(make: Factory) -> None:
    buffer = make()
    for i in range(4):
        buffer.add([_reading(i), _reading(i)], taken_ms=1000 + i, time_synced=True)
    [first, *_] = buffer.begin(max_envelopes=5, max_readings=2)
    buffer.end([first.seq], [])
    stats = buffer.stats()
    assert (stats.cycles, stats.unsent_cycles, stats.unsent_readings) == (4, 3, 6)
    assert (stats.oldest_unsent_ms, stats.last_seq) == (1001, 4)


# -- what only a durable buffer can promise ------------------------------------------------------

def test_committed_cycles_and_the_chain_survive_a_restart(tmp_path: Path) -> None:
    sealer = lambda env: seal(SIGNER, env)
    buffer = SqliteBuffer(tmp_path / "b.db", gateway="gw", sealer=sealer)
    buffer.add([_reading(1)], taken_ms=1, time_synced=True)
    [first] = buffer.begin(max_envelopes=1, max_readings=10)  # in flight when the process dies
    buffer.close()
    reopened = SqliteBuffer(tmp_path / "b.db", gateway="gw", sealer=sealer)
    assert reopened.add([_reading(2)], taken_ms=2, time_synced=True) == 2
    batch = reopened.begin(max_envelopes=5, max_readings=1)
    assert batch[0] == first  # sent again, byte-identical
    assert open_envelope(batch[1].token, KEYS)[0].prev == envelope_hash(first.token)
    reopened.close()


def test_the_store_runs_wal_with_full_sync(tmp_path: Path) -> None:
    buffer = SqliteBuffer(tmp_path / "b.db", gateway="gw", sealer=lambda env: seal(SIGNER, env))
    buffer.add([_reading(1)], taken_ms=1, time_synced=True)
    conn = buffer._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    buffer.close()
    check = sqlite3.connect(tmp_path / "b.db")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 1
