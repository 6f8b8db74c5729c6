"""The SQLite store: durable settings, migrations by user_version, quarantine bookkeeping."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cloud_receiver._sqlite_store import MIGRATIONS
from cloud_receiver.store import QuarantineItem, open_store
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


def test_quarantine_keeps_raw_bytes_and_counts_per_reason() -> None:
    store = open_store(":memory:")
    for reason in ("malformed", "malformed", "bad_signature"):
        store.add_quarantine(QuarantineItem(1, "t", reason, "d", b"\x00\xffraw"))
    assert store.quarantine_counts() == {"bad_signature": 1, "malformed": 2}
    assert [q.reason for q in store.quarantined(limit=2)] == ["bad_signature", "malformed"]
    assert store.quarantined(limit=5, reason="bad_signature")[0].payload == b"\x00\xffraw"
    store.close()
