"""A damaged, lost or stale store is moved aside (never deleted), a new epoch starts, an alarm is
raised and collection goes on; an (epoch, seq) pair is never used twice."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from buffer_helpers import KEYS, FakeClock, Recorder, reading, readings

from agent.buffer import SqliteBuffer
from agent.buffer._open import read_epoch
from nengtan.envelope import open_envelope
from nengtan.errors import StoreError


def _buffer(state: Path, clock: FakeClock | None = None) -> SqliteBuffer:
    return SqliteBuffer(state / "buffer.db", gateway="gw", sealer=Recorder(), clock=clock or FakeClock())


def _filled(state: Path, cycles: int = 40) -> None:
    buffer = _buffer(state)
    for i in range(cycles):
        buffer.add(readings(20, i), taken_ms=i, time_synced=True)
    buffer.begin(max_envelopes=2, max_readings=100)
    buffer.close()


def _quarantined(state: Path) -> list[Path]:
    return sorted((state / "quarantine").iterdir()) if (state / "quarantine").exists() else []


def _assert_fresh_epoch(state: Path, epoch: int, kind: str) -> SqliteBuffer:
    buffer = _buffer(state)
    assert buffer.epoch == epoch and read_epoch(state) == epoch
    assert [a.kind for a in buffer.alarms()] == [kind]
    assert buffer.add([reading(1)], taken_ms=1, time_synced=True) == 1  # collection goes on
    [sealed] = buffer.begin(max_envelopes=1, max_readings=10)
    envelope = open_envelope(sealed.token, KEYS)[0]
    assert (envelope.epoch, envelope.seq, envelope.prev) == (epoch, 1, None)
    return buffer


def test_a_new_store_claims_epoch_one_in_the_epoch_file(tmp_path: Path) -> None:
    buffer = _buffer(tmp_path)
    assert buffer.epoch == 1 and (tmp_path / "epoch").read_text() == "1\n"
    assert buffer.alarms() == [] and not list(tmp_path.glob(".epoch*"))
    buffer.close()


def test_a_healthy_restart_keeps_the_epoch_and_raises_no_alarm(tmp_path: Path) -> None:
    _filled(tmp_path)
    buffer = _buffer(tmp_path)
    assert buffer.epoch == 1 and buffer.alarms() == [] and _quarantined(tmp_path) == []
    assert buffer.add([reading(1)], taken_ms=1, time_synced=True) == 41
    buffer.close()


def test_garbage_over_the_database_is_quarantined_and_a_new_epoch_starts(tmp_path: Path) -> None:
    _filled(tmp_path)
    db = tmp_path / "buffer.db"
    original = db.stat().st_size
    db.write_bytes(os.urandom(original))
    _assert_fresh_epoch(tmp_path, 2, "store_corrupt").close()
    [moved] = _quarantined(tmp_path)
    assert (moved / "buffer.db").stat().st_size == original  # moved, byte for byte, not deleted
    reason = json.loads((moved / "reason.json").read_text())
    assert reason["reason"] == "damaged" and reason["new_epoch"] == 2
    assert "NOTADB" in reason["detail"] or "not a database" in reason["detail"]


def test_a_truncated_database_is_quarantined_and_a_new_epoch_starts(tmp_path: Path) -> None:
    _filled(tmp_path)
    db = tmp_path / "buffer.db"
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)
    _assert_fresh_epoch(tmp_path, 2, "store_corrupt").close()
    assert len(_quarantined(tmp_path)) == 1


def test_a_damaged_store_moves_with_its_wal_and_shm(tmp_path: Path) -> None:
    live, cut = tmp_path / "live", tmp_path / "cut"
    live.mkdir()
    cut.mkdir()
    _filled(live)
    buffer = _buffer(live)
    buffer.add([reading(1)], taken_ms=1, time_synced=True)
    # What a power cut leaves: the files as they are while the store is open, WAL included...
    for name in ("buffer.db", "buffer.db-wal", "buffer.db-shm", "epoch"):
        (cut / name).write_bytes((live / name).read_bytes())
    buffer.close()
    with open(cut / "buffer.db", "r+b") as f:
        f.seek(4096 * 3)
        f.write(os.urandom(4096 * 4))  # ...and a card that scrambled some pages
    _assert_fresh_epoch(cut, 2, "store_corrupt").close()
    [moved] = _quarantined(cut)
    assert {p.name for p in moved.iterdir()} == {"buffer.db", "buffer.db-wal", "buffer.db-shm",
                                                 "reason.json"}


def test_a_deleted_database_with_the_epoch_file_present_starts_a_new_epoch(tmp_path: Path) -> None:
    _filled(tmp_path)
    (tmp_path / "buffer.db").unlink()
    buffer = _assert_fresh_epoch(tmp_path, 2, "store_missing")
    buffer.close()
    _buffer(tmp_path).close()  # and the next restart is an ordinary one
    assert read_epoch(tmp_path) == 2


def test_epochs_keep_rising_across_repeated_damage(tmp_path: Path) -> None:
    for epoch in (2, 3):
        _filled(tmp_path)
        (tmp_path / "buffer.db").write_bytes(b"not a database at all" * 100)
        _assert_fresh_epoch(tmp_path, epoch, "store_corrupt").close()
    assert len(_quarantined(tmp_path)) == 2


def test_a_restored_copy_of_an_older_epoch_is_quarantined_not_continued(tmp_path: Path) -> None:
    _filled(tmp_path)
    (tmp_path / "epoch").write_text("4\n")  # epoch 4 was in use before this copy came back
    _assert_fresh_epoch(tmp_path, 5, "store_stale").close()
    assert json.loads((_quarantined(tmp_path)[0] / "reason.json").read_text())["reason"] == "stale"


def test_an_unreadable_epoch_file_beside_a_lost_store_never_reuses_an_epoch(tmp_path: Path) -> None:
    _filled(tmp_path)
    (tmp_path / "buffer.db").write_bytes(b"\0" * 4096)  # damaged, epoch unreadable
    (tmp_path / "epoch").write_text("garbage")
    buffer = _buffer(tmp_path)
    assert buffer.epoch == 2
    assert [a.kind for a in buffer.alarms()] == ["epoch_file_damaged", "store_corrupt"]
    buffer.close()


def test_an_orphan_wal_never_meets_a_new_database(tmp_path: Path) -> None:
    (tmp_path / "buffer.db-wal").write_bytes(b"x" * 100)
    _assert_fresh_epoch(tmp_path, 2, "store_missing").close()
    assert (_quarantined(tmp_path)[0] / "buffer.db-wal").read_bytes() == b"x" * 100


def test_an_error_of_the_environment_is_not_corruption(tmp_path: Path) -> None:
    (tmp_path / "buffer.db").mkdir()  # cannot be opened, but nothing is damaged
    with pytest.raises(StoreError):
        _buffer(tmp_path)
    assert _quarantined(tmp_path) == [] and (tmp_path / "buffer.db").is_dir()


def test_a_version_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "buffer.db", isolation_level=None)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE cycles (seq INTEGER PRIMARY KEY, taken_ms INTEGER, synced INTEGER, n INTEGER,
                             readings TEXT, envelope INTEGER);
        CREATE TABLE envelopes (seq INTEGER PRIMARY KEY, last INTEGER, hash TEXT, token TEXT,
                                readings INTEGER, sealed_ms INTEGER, sent_ms INTEGER);
        INSERT INTO meta VALUES ('epoch', '1'), ('next_seq', '3');
        INSERT INTO cycles VALUES (1, 1, 1, 1, '[["main","active_energy_import",1,1.0,"good"]]', 1);
        INSERT INTO cycles VALUES (2, 2, 1, 1, '[["main","active_energy_import",2,2.0,"good"]]', NULL);
        INSERT INTO envelopes VALUES (1, 1, 'HASHOFONE', 'token', 1, 1, NULL);
        PRAGMA user_version = 1;
    """)
    db.close()
    recorder = Recorder()
    buffer = SqliteBuffer(tmp_path / "buffer.db", gateway="gw", sealer=recorder, clock=FakeClock())
    assert buffer.epoch == 1 and read_epoch(tmp_path) == 1 and buffer.alarms() == []
    assert buffer.add([reading(3)], taken_ms=3, time_synced=True) == 3
    buffer.begin(max_envelopes=5, max_readings=10)
    assert recorder.envelopes[0].prev == "HASHOFONE" and recorder.envelopes[0].seq == 2
    buffer.close()


@pytest.mark.parametrize("shm", ["as_is", "zeroed", "missing"])
def test_a_power_cut_with_a_hot_wal_is_not_corruption(tmp_path: Path, shm: str) -> None:
    live, cut = tmp_path / "live", tmp_path / "cut"
    live.mkdir()
    cut.mkdir()
    buffer = _buffer(live)
    seqs = [buffer.add([reading(i)], taken_ms=i, time_synced=True) for i in range(5)]
    for name in ("buffer.db", "buffer.db-wal", "buffer.db-shm", "epoch"):
        (cut / name).write_bytes((live / name).read_bytes())
    buffer.close()
    if shm == "zeroed":  # the -shm is never synced: after a power cut it holds anything
        (cut / "buffer.db-shm").write_bytes(b"\0" * (cut / "buffer.db-shm").stat().st_size)
    elif shm == "missing":
        (cut / "buffer.db-shm").unlink()
    reopened = _buffer(cut)
    assert reopened.epoch == 1 and reopened.alarms() == [] and _quarantined(cut) == []
    assert reopened.stats().last_seq == seqs[-1] == 5  # the commits in the WAL are all there
    reopened.close()
