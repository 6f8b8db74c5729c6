"""The SQLite store: durable settings, migrations by user_version, quarantine bookkeeping."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cloud_receiver._sqlite_store import MIGRATIONS
from cloud_receiver.store import QuarantineItem, Store, open_store
from nengtan.errors import StoreError


def test_a_file_store_uses_wal_full_sync_and_the_latest_schema(tmp_path: Path) -> None:
    store = open_store(tmp_path / "r.db")
    store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()


def test_reopening_does_not_migrate_twice(tmp_path: Path) -> None:
    open_store(tmp_path / "r.db").close()
    store = open_store(tmp_path / "r.db")
    assert store.stats()["envelopes"] == 0
    store.close()


def test_a_database_from_a_newer_receiver_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this receiver"):
        open_store(tmp_path / "r.db")


def test_read_only_commands_do_not_create_a_missing_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="there is no receiver database"):
        open_store(tmp_path / "typo.db", create=False)
    assert not (tmp_path / "typo.db").exists()


def test_quarantine_keeps_raw_bytes_and_counts_per_reason(store: Store) -> None:
    for reason in ("malformed", "malformed", "bad_signature"):
        store.add_quarantine(QuarantineItem(1, "t", reason, "d", b"\x00\xffraw"))
    assert store.quarantine_counts() == {"bad_signature": 1, "malformed": 2}
    assert [q.reason for q in store.quarantined(limit=2)] == ["bad_signature", "malformed"]
    assert store.quarantined(limit=5, reason="bad_signature")[0].payload == b"\x00\xffraw"


def test_a_schema_1_database_is_migrated_keeping_its_readings(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "r.db")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO envelopes VALUES ('gw', 1, 1, 2, 'h', NULL, 'k', 5, 't')")
    conn.executemany("INSERT INTO readings VALUES ('gw', 1, ?, 'm', 'active_energy_import', ?, ?,"
                     " 'good')", [(1, 1000, 10.0), (2, 2000, 11.5)])
    conn.commit()
    conn.close()

    store = open_store(tmp_path / "r.db")
    assert [s.value for s in store.counter_samples("active_energy_import")] == [10.0, 11.5]
    assert store.stats()["envelopes"] == 1 and store.missing_ranges("gw", 1) == []
    store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT version, boot_id FROM envelopes").fetchall() == [(1, None)]
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    # Migration 4 moved the counters into counter_points and marked the rollups for a rebuild.
    assert not {"readings_energy_import", "readings_by_series"} & indexes
    assert conn.execute("SELECT COUNT(*) FROM counter_points").fetchone()[0] == 2
    assert conn.execute("SELECT value FROM counters WHERE name = 'rollups_stale'").fetchone() == (1,)
    conn.close()


def test_counter_series_are_read_in_sequence_order_on_the_primary_key() -> None:
    store = open_store(":memory:")
    conn = store._conn  # type: ignore[attr-defined]
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT gateway, meter, ts_ms, epoch, seq, value FROM counter_points"
        " WHERE gateway = 'g' AND meter = 'm' AND measurement = 'active_energy_import'"
        " AND (epoch, seq) < (1, 5) ORDER BY epoch DESC, seq DESC LIMIT 1").fetchall()
    assert "PRIMARY KEY" in str(plan) and "TEMP B-TREE" not in str(plan)
    assert list(store.counter_samples("not_a_measurement")) == []
    store.close()
