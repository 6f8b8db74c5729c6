"""What only the PostgreSQL store has: its migrations, advisory locks, COPY, reconnecting, and
the ``[storage] url`` wiring. The ``Store`` contract itself is tested on both backends by every
receiver unit test that takes the ``store`` fixture."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cloud_receiver import _pg_schema
from cloud_receiver._pg_store import _NEIGHBOURS_SQL, PgStore, redact
from cloud_receiver._sqlite_store import SqliteStore
from cloud_receiver.cli import receiver
from cloud_receiver.config import parse_config
from cloud_receiver.store import QuarantineItem, ReadingRow, StoredEnvelope, open_store
from nengtan.errors import ConfigError, StoreError
from tests.integration.receiver.pg_helpers import PG_URL, admin, fresh_schema, schema_url
from tests.unit.receiver.receiver_helpers import Batches, enrollment_record, new_signer

pg = pytest.mark.integration
Schema = tuple[str, str]  # (name, URL)


def _tables(schema: str) -> set[str]:
    with admin() as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                            (schema,)).fetchall()
    return {r[0] for r in rows}


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT version FROM schema_migrations ORDER BY version").fetchall()]


@pytest.fixture
def pg_store(pg_schema: Schema) -> Iterator[PgStore]:
    store = PgStore(pg_schema[1])
    yield store
    store.close()


def _envelope(seq: int, last: int, gateway: str = "gw-1") -> StoredEnvelope:
    return StoredEnvelope(gateway, 1, seq, last, f"h{seq}", None, "kid", 5, "token")


@pg
def test_an_empty_schema_gets_every_migration_and_the_sqlite_table_names(
        pg_schema: Schema) -> None:
    name, url = pg_schema
    store = open_store(url)
    assert isinstance(store, PgStore)
    assert set(store.stats()) <= _tables(name)  # stats names the same tables as on SQLite
    assert {"schema_migrations", "accounting_alerts"} <= _tables(name)
    store.close()
    assert _versions(url) == list(range(1, len(_pg_schema.MIGRATIONS) + 1))
    open_store(url).close()  # reopening migrates nothing more
    assert _versions(url) == list(range(1, len(_pg_schema.MIGRATIONS) + 1))


@pg
def test_an_older_schema_gets_only_the_missing_migrations(
        pg_schema: Schema, monkeypatch: pytest.MonkeyPatch) -> None:
    name, url = pg_schema
    monkeypatch.setattr(_pg_schema, "MIGRATIONS", _pg_schema.MIGRATIONS[:1])
    PgStore(url).close()
    assert "accounting_alerts" not in _tables(name) and _versions(url) == [1]
    monkeypatch.undo()
    store = PgStore(url)
    assert store.accounting_alerts() == []
    store.close()
    assert _versions(url) == list(range(1, len(_pg_schema.MIGRATIONS) + 1))


@pg
def test_a_schema_from_a_newer_receiver_is_refused(pg_schema: Schema) -> None:
    url = pg_schema[1]
    PgStore(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                     (len(_pg_schema.MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer than this receiver"):
        open_store(url)


@pg
def test_read_only_commands_do_not_create_the_tables(pg_schema: Schema) -> None:
    name, url = pg_schema
    with pytest.raises(StoreError, match="there is no receiver database"):
        open_store(url, create=False)
    assert _tables(name) == set()


def _open_together(url: str, count: int) -> list[BaseException]:
    """Open ``count`` stores on ``url`` at the same moment; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            PgStore(url).close()
        except BaseException as exc:  # collected: a thread cannot fail the test
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


@pg
def test_receivers_starting_together_migrate_once() -> None:
    """Without the migration lock, the losers fail on tables that already exist."""
    for _ in range(3):
        with fresh_schema() as (_, url):
            assert _open_together(url, 4) == []
            assert _versions(url) == list(range(1, len(_pg_schema.MIGRATIONS) + 1))


@pg
def test_transactions_holding_the_same_gateway_lock_run_one_after_the_other(
        pg_schema: Schema) -> None:
    first, second = PgStore(pg_schema[1]), PgStore(pg_schema[1])  # two receiver processes
    entered: dict[str, float] = {}

    def enter(gateway: str) -> None:
        with second.transaction(lock=gateway):
            entered[gateway] = time.monotonic()

    try:
        with first.transaction(lock="gw-1"):
            other = threading.Thread(target=enter, args=("gw-2",))
            same = threading.Thread(target=enter, args=("gw-1",))
            other.start()
            other.join(10)
            assert "gw-2" in entered  # another gateway's lock does not wait
            same.start()
            time.sleep(0.5)
            assert "gw-1" not in entered
            released = time.monotonic()
        same.join(10)
        assert entered["gw-1"] >= released
        # Unlocked transactions never wait on a gateway's lock.
        with first.transaction(lock="gw-1"), second.transaction():
            pass
    finally:
        first.close()
        second.close()


@pg
def test_readings_go_in_by_copy_and_read_back_exactly(pg_store: PgStore, pg_schema: Schema) -> None:
    rows = [ReadingRow(1, "m1", "active_energy_import", 1_000, 230.13000000000002, "good"),
            ReadingRow(1, "m1", "voltage_a", 1_001, None, "bad"),
            ReadingRow(2, "m-2", "active_energy_import", 2_000, 12, "good")]  # an int value
    with pg_store.transaction(lock="gw-1") as txn:
        assert txn.add_envelope(_envelope(1, 2), iter(rows)) == 3
        assert txn.add_envelope(_envelope(3, 3), []) == 0
    with psycopg.connect(pg_schema[1]) as conn:
        conn.execute("SET enable_seqscan = off")
        found = conn.execute("SELECT seq, meter, measurement, ts_ms, value, quality FROM readings"
                             " WHERE gateway = 'gw-1' AND epoch = 1 AND seq BETWEEN 1 AND 2"
                             " ORDER BY seq, meter, measurement").fetchall()
        plan = conn.execute("EXPLAIN SELECT * FROM readings WHERE gateway = 'gw-1'"
                            " AND epoch = 1 AND seq BETWEEN 1 AND 2").fetchall()
    assert found == [tuple(r) for r in rows]
    assert "readings_by_block" in str(plan)  # an envelope's readings are found by index
    assert pg_store.stats()["readings"] == 3


@pg
def test_a_failed_copy_stores_nothing_of_the_envelope(pg_store: PgStore) -> None:
    # The server refuses the second row (meter is NOT NULL) after the envelope row went in.
    bad: Any = [ReadingRow(1, "m1", "active_energy_import", 1_000, 1.0, "good"),
                (1, None, "voltage_a", 1_000, 2.0, "good")]
    with pytest.raises(StoreError, match=r"receiver database postgresql://.*meter"), \
            pg_store.transaction(lock="gw-1") as txn:
        txn.add_envelope(_envelope(1, 1), bad)
    assert (pg_store.stats()["envelopes"], pg_store.stats()["readings"]) == (0, 0)


@pg
def test_a_nul_in_a_quarantine_detail_is_kept_visible_not_refused(pg_store: PgStore) -> None:
    """PostgreSQL text cannot hold NUL; refusing it would leave the message unacknowledged
    and redelivered forever."""
    pg_store.add_quarantine(QuarantineItem(1, "nengtan/v1/gw/batch", "malformed", "a\x00b",
                                           b"\x00raw"))
    item = pg_store.quarantined(limit=1)[0]
    assert (item.detail, item.payload) == ("a\\x00b", b"\x00raw")


@pg
def test_counter_neighbours_of_every_series_are_found_by_index_seeks(pg_schema: Schema) -> None:
    with psycopg.connect(pg_schema[1]) as conn:
        PgStore(pg_schema[1]).close()
        plan = str(conn.execute("EXPLAIN " + _NEIGHBOURS_SQL, {
            "meters": ["m1", "m2"], "measurements": ["active_energy_import"] * 2,
            "gateway": "g", "epoch": 1, "seq": 5, "last": 9}).fetchall())
    assert plan.count("counter_points_pkey") == 2 and "Sort" not in plan


@pg
def test_a_dropped_connection_fails_one_call_then_reconnects(pg_store: PgStore) -> None:
    pid = pg_store._conn.info.backend_pid
    with admin() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreError, match="terminating connection"), \
            pg_store.transaction(lock="gw-1") as txn:
        txn.envelope_starting_at("gw-1", 1, 1)  # the ingest that notices is not acknowledged
    with pg_store.transaction(lock="gw-1") as txn:
        txn.add_envelope(_envelope(1, 1), [])
    assert pg_store.stats()["envelopes"] == 1
    pg_store.close()
    with pytest.raises(StoreError, match="is closed"):
        pg_store.stats()


@pg
def test_errors_name_the_database_without_its_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://postgres:s3cret@127.0.0.1:1/test?connect_timeout=2")
    assert "postgresql://postgres@127.0.0.1:1/test" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_redact_drops_passwords_wherever_they_are() -> None:
    assert redact("postgres://u:pw@h:5432/db?password=pw&sslmode=require") == \
        "postgres://u@h:5432/db?sslmode=require"
    assert redact("postgresql://h/db") == "postgresql://h/db"


def test_open_store_picks_sqlite_for_anything_but_a_postgresql_url(tmp_path: Path) -> None:
    store = open_store(tmp_path / "postgres:" / ".." / "r.db")
    assert isinstance(store, SqliteStore)
    store.close()


def test_storage_takes_exactly_one_of_path_and_url(tmp_path: Path) -> None:
    registry = {"dir": "gateways"}
    url = "postgresql://nengtan@db:5432/nengtan"
    config = parse_config({"storage": {"url": url}, "registry": registry}, base_dir=tmp_path)
    assert (config.storage, config.storage_path, config.files_dir) == (url, None, tmp_path)
    config = parse_config({"storage": {"path": "r.db"}, "registry": registry}, base_dir=tmp_path)
    assert (config.storage, config.storage_url) == (tmp_path / "r.db", None)
    for storage in ({"path": "r.db", "url": url}, {}):
        with pytest.raises(ConfigError, match="set exactly one of path"):
            parse_config({"storage": storage, "registry": registry})
    with pytest.raises(ConfigError, match=r"storage\.url"):
        parse_config({"storage": {"url": "mysql://db/x"}, "registry": registry})


@pg
def test_the_cli_works_on_a_postgresql_url(pg_schema: Schema, tmp_path: Path) -> None:
    (tmp_path / "gateways").mkdir()
    config = tmp_path / "receiver.toml"
    config.write_text(f'[storage]\nurl = "{pg_schema[1]}"\n[registry]\ndir = "gateways"\n')
    batches = Batches(new_signer())
    record = tmp_path / "gw.enroll.json"
    record.write_text(json.dumps(enrollment_record(batches.signer, batches.gateway)))
    line = tmp_path / "export.jws"
    line.write_text(batches.seal(1, 3, values=[100.0, 100.5, 101.25]) + "\n")
    runner = CliRunner()
    refused = runner.invoke(receiver, ["report", "--config", str(config)])
    assert refused.exit_code == 1 and "there is no receiver database" in refused.output
    assert runner.invoke(receiver, ["enroll", "--config", str(config), str(record)]).exit_code == 0
    imported = runner.invoke(receiver, ["import", "--config", str(config), str(line)])
    assert imported.exit_code == 0, imported.output
    report = json.loads(runner.invoke(receiver, ["report", "--config", str(config), "--json"]).output)
    assert [row["kwh"] for row in report["rows"]] == [1.25]


def test_the_test_url_defaults_to_the_local_server() -> None:
    assert schema_url("t_x", "postgresql://h/db") == "postgresql://h/db?options=-csearch_path%3Dt_x"
    assert schema_url("t_x", "postgresql://h/db?sslmode=disable").endswith("&options=-csearch_path%3Dt_x")
    assert PG_URL.startswith("postgresql://")
