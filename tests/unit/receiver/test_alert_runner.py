"""The receiver evaluating its alert rules by itself (``[alerts]``): the config section, the
runner's interval, reloads of the plant files, errors, stopping; on SQLite files (the runner
opens a connection of its own, which an in-memory database cannot share). The PostgreSQL side
(two receivers, one alert) and the service against a real broker are in
tests/integration/receiver/test_alert_runner_pg.py."""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import cloud_receiver
from cloud_receiver import alert_runner
from cloud_receiver.accounting.alerts import evaluate
from cloud_receiver.alert_runner import AlertRunner
from cloud_receiver.config import SCHEMA, load_config, parse_config
from cloud_receiver.service import run
from cloud_receiver.store import AccountingAlert, Store, StoredEnvelope, open_store
from nengtan.errors import ConfigError, StoreError
from tests.helpers import wait_for
from tests.unit.accounting.accounting_helpers import GATEWAY, JUNE, MINUTE, PLANT_TOML, plant_dir

MINIMAL = {"storage": {"path": "receiver.db"}, "registry": {"dir": "gateways"}}
SAMPLE = Path(cloud_receiver.__file__).parent / "receiver.sample.toml"
OFFLINE = '[[rule]]\nname = "gw-offline"\nkind = "gateway_offline"\nafter_minutes = 10\n'
NOW = JUNE + 600 * MINUTE
FAST = 0.05  # the runner's interval in these tests, seconds


# -- [alerts] in the receiver config ------------------------------------------------------------

def test_without_an_alerts_section_the_service_runs_no_rules(tmp_path: Path) -> None:
    assert parse_config(MINIMAL, base_dir=tmp_path).alerts is None


def test_an_alerts_section_gets_its_default_interval_and_a_path_relative_to_the_config(
        tmp_path: Path) -> None:
    config = parse_config({**MINIMAL, "alerts": {"plant": "plant"}}, base_dir=tmp_path)
    assert config.alerts is not None
    assert (config.alerts.plant_dir, config.alerts.interval_s) == (tmp_path / "plant", 300)


def test_alerts_section_mistakes_are_reported_with_their_paths_and_no_directory_is_read(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MINIMAL, "alerts": {"interval_s": 5, "plants": "x"}}, "r.toml")
    problems = sorted(caught.value.problems)
    assert problems[0] == "At 'alerts.interval_s': 5 is less than the minimum of 10"
    assert problems[1:] == ["At 'alerts.plant': required key is missing",
                            "At 'alerts.plants': unknown key"]
    # A directory that does not exist is the service's to report (it is not there yet when a
    # config is written for a new host).
    assert parse_config({**MINIMAL, "alerts": {"plant": "/nowhere"}}).alerts is not None


def test_the_sample_documents_every_alerts_key_and_its_section_validates_uncommented() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    section = text[text.index("# [alerts]"):]
    for key in SCHEMA["properties"]["alerts"]["properties"]:
        assert f"\n# {key} = " in section, key
    uncommented = section.replace("# [alerts]", "[alerts]").replace("\n# ", "\n")
    data = tomllib.loads(text.replace(section, uncommented))
    config = parse_config(data, str(SAMPLE), SAMPLE.parent)
    assert config.alerts is not None and config.alerts.interval_s == 300
    assert load_config(SAMPLE).alerts is None  # as shipped: commented out


# -- the runner ---------------------------------------------------------------------------------

@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    """The service's own connection; the runner opens another on the same file."""
    store = open_store(tmp_path / "receiver.db")
    yield store
    store.close()


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    return plant_dir(tmp_path, extra={"alerts.toml": OFFLINE})


@pytest.fixture
def runner(tmp_path: Path, db: Store, plant: Path) -> Iterator[AlertRunner]:
    r = AlertRunner(tmp_path / "receiver.db", plant, interval_s=FAST, clock_ms=lambda: NOW)
    yield r
    r.stop(timeout_s=5)


def live(store: Store) -> list[AccountingAlert]:
    return store.accounting_alerts(state="live")


def occurrences(store: Store) -> int:
    return sum(a.occurrences for a in live(store))


def runner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "alert-runner"]


def test_the_runner_raises_refreshes_and_closes_alerts_every_interval_by_itself(
        db: Store, runner: AlertRunner) -> None:
    runner.start()
    wait_for(lambda: occurrences(db) >= 3, "three evaluations")
    [alert] = live(db)
    # The plant's gateway has never sent anything: offline from the first evaluation on.
    assert (alert.kind, alert.subject, alert.rule) == ("gateway_offline", GATEWAY, "gw-offline")
    assert alert.first_seen_ms == NOW and alert.detail == "no envelope ever received from this gateway"
    # An envelope arrives (through the service's connection): the next evaluation closes it.
    with db.transaction(lock=GATEWAY) as txn:
        txn.add_envelope(StoredEnvelope(GATEWAY, 1, 1, 1, "h1", None, "k", NOW, "t"), [])
    wait_for(lambda: not live(db), "the alert to close")
    [closed] = db.accounting_alerts(state="closed")
    assert (closed.id, closed.closed_ms) == (alert.id, NOW)


def test_a_plant_file_broken_mid_run_is_logged_and_the_last_good_model_stays_in_use(
        db: Store, runner: AlertRunner, plant: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner.start()
    good = runner.plant
    wait_for(lambda: occurrences(db) >= 1, "the first evaluation")
    (plant / "plant.toml").write_text(PLANT_TOML + "\n[[point]]\nid = 3\n", encoding="utf-8")
    broken = str(plant / "plant.toml")
    wait_for(lambda: any(broken in r.getMessage() and r.levelno == logging.ERROR
                         for r in caplog.records), "the broken plant to be logged")
    [logged] = [r.getMessage() for r in caplog.records if broken in r.getMessage()]
    assert "At 'point[2]" in logged and "still using the plant model" in logged
    # Still evaluating, with the plant model loaded before the edit.
    seen = occurrences(db)
    wait_for(lambda: occurrences(db) >= seen + 2, "two more evaluations")
    assert runner.plant is good
    assert [(a.subject, a.state) for a in live(db)] == [(GATEWAY, "open")]
    # Reported once per change, not at every interval.
    assert sum(broken in r.getMessage() for r in caplog.records) == 1
    # Fixed (its gateway renamed): read again, the old gateway's alert closes, a new one opens.
    (plant / "plant.toml").write_text(PLANT_TOML.replace(GATEWAY, "gw-renamed"), encoding="utf-8")
    wait_for(lambda: [a.subject for a in live(db)] == ["gw-renamed"], "the fixed plant")
    assert runner.plant is not good


def test_a_failing_evaluation_is_logged_and_retried_at_the_next_interval(
        db: Store, runner: AlertRunner, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) <= 2:
            raise StoreError("receiver database r.db: disk I/O error")
        return evaluate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(alert_runner, "evaluate", flaky)
    runner.start()
    wait_for(lambda: len(live(db)) == 1, "an evaluation after two failures")
    failed = [r for r in caplog.records if "evaluation failed" in r.getMessage()]
    assert len(failed) == 2 and "disk I/O error" in failed[0].getMessage()
    assert len(runner_threads()) == 1  # the thread survived both


def test_the_first_evaluation_waits_one_interval_and_stop_is_prompt(
        tmp_path: Path, db: Store, plant: Path) -> None:
    slow = AlertRunner(tmp_path / "receiver.db", plant, interval_s=3600, clock_ms=lambda: NOW)
    slow.start()
    time.sleep(0.2)
    # After an outage the broker first hands over what it queued; evaluating before that
    # would find every gateway offline.
    assert live(db) == []
    began = time.monotonic()
    slow.stop()
    assert time.monotonic() - began < 1.0
    assert runner_threads() == []


def test_the_runner_does_not_start_without_its_plant_directory_or_with_a_broken_plant(
        tmp_path: Path, db: Store, plant: Path) -> None:
    missing = AlertRunner(tmp_path / "receiver.db", tmp_path / "nope", interval_s=FAST)
    with pytest.raises(ConfigError) as caught:
        missing.start()
    assert caught.value.problems == (
        f"At 'alerts.plant': the plant directory {tmp_path / 'nope'} does not exist",)
    (plant / "alerts.toml").write_text('[[rule]]\nname = "x"\nkind = "smoke"\n')
    with pytest.raises(ConfigError) as caught:
        AlertRunner(tmp_path / "receiver.db", plant, interval_s=FAST).start()
    assert caught.value.source == str(plant / "alerts.toml")
    assert runner_threads() == []


def test_the_service_refuses_to_start_with_a_broken_plant_before_it_connects(
        tmp_path: Path, plant: Path) -> None:
    (tmp_path / "gateways").mkdir()
    (plant / "plant.toml").write_text("[plant\n", encoding="utf-8")
    config = parse_config({**MINIMAL, "alerts": {"plant": "plant"},
                           "mqtt": {"port": 1}}, base_dir=tmp_path)  # never dialled
    with pytest.raises(ConfigError) as caught:
        run(config, threading.Event())
    assert caught.value.source == str(plant / "plant.toml")
    assert runner_threads() == []
