"""Alert rules evaluated by the receivers themselves: two runners on one PostgreSQL schema raise
one alert between them, and ``service.run`` with ``[alerts]`` against a real Mosquitto raises
an offline gateway's alert with nobody calling ``alerts check``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_receiver.accounting import alerts
from cloud_receiver.accounting.alerts import load_rules
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.alert_runner import AlertRunner, evaluate_exclusive
from cloud_receiver.config import parse_config
from cloud_receiver.service import run
from cloud_receiver.store import Store, open_store
from nengtan.broker import start_broker
from tests.helpers import mosquitto_binary, wait_for
from tests.integration.receiver.pg_helpers import BACKENDS, fresh_schema
from tests.unit.accounting.accounting_helpers import GATEWAY, JUNE, MINUTE, PLANT_TOML, plant_dir
from tests.unit.receiver.receiver_helpers import Batches, enrollment_record, new_signer

pytestmark = pytest.mark.integration

OFFLINE = '[[rule]]\nname = "gw-offline"\nkind = "gateway_offline"\nafter_minutes = 10\n'
NOW = JUNE + 600 * MINUTE


@pytest.fixture
def two_stores(pg_schema: tuple[str, str]) -> Iterator[tuple[Store, Store]]:
    """Two receivers' connections to one schema."""
    first = open_store(pg_schema[1])
    second = open_store(pg_schema[1], create=False)
    yield first, second
    first.close()
    second.close()


def test_two_evaluations_at_once_take_turns_under_the_lock_and_raise_one_alert(
        tmp_path: Path, two_stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch) -> None:
    plant = load_plant(plant_dir(tmp_path, extra={"alerts.toml": OFFLINE}))
    rules = load_rules(plant)
    windows: list[tuple[float, float]] = []
    check = alerts._CHECKS["gateway_offline"]

    def slow_check(*args: Any) -> dict[str, str]:
        began = time.monotonic()
        time.sleep(0.3)  # long enough for the other evaluation to start meanwhile, unlocked
        found = check(*args)
        windows.append((began, time.monotonic()))
        return found

    monkeypatch.setitem(alerts._CHECKS, "gateway_offline", slow_check)

    def both(lock: bool) -> None:
        windows.clear()
        barrier = threading.Barrier(2)

        def one(store: Store, now_ms: int) -> None:
            barrier.wait()
            evaluate_exclusive(store, plant, rules, now_ms, lock=lock)

        threads = [threading.Thread(target=one, args=(s, NOW + i))
                   for i, s in enumerate(two_stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(windows) == 2

    both(lock=True)
    first, second = sorted(windows)
    assert first[1] <= second[0], "the two evaluations overlapped although locked"
    [alert] = two_stores[0].accounting_alerts(state=None)
    assert (alert.subject, alert.state, alert.occurrences) == (GATEWAY, "open", 2)
    assert alert.last_seen_ms == NOW + 1  # the second saw, and refreshed, the first's alert
    # The same two evaluations unlocked overlap, which is what the lock is there to stop.
    both(lock=False)
    first, second = sorted(windows)
    assert first[1] > second[0]


def test_two_runners_on_one_schema_keep_one_live_alert_between_them(
        tmp_path: Path, pg_schema: tuple[str, str]) -> None:
    plant = plant_dir(tmp_path, extra={"alerts.toml": OFFLINE})
    store = open_store(pg_schema[1])
    runners = [AlertRunner(pg_schema[1], plant, interval_s=0.02, clock_ms=lambda: NOW)
               for _ in range(2)]
    try:
        for r in runners:
            r.start()
        wait_for(lambda: sum(a.occurrences for a in store.accounting_alerts()) >= 20,
                 "twenty evaluations")
    finally:
        for r in runners:
            r.stop(timeout_s=5)
    [alert] = store.accounting_alerts(state=None)
    assert (alert.kind, alert.subject, alert.state) == ("gateway_offline", GATEWAY, "open")
    store.close()


# -- the service, with a real broker -------------------------------------------------------------

LIVE_GW = "gw-zz-01"  # enrolled, publishes
SILENT_GW = "gw-silent"  # in the plant, never heard from


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {"path": "receiver.db"}
        return
    with fresh_schema() as (_, url):
        yield {"url": url}


def _publish(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_service_raises_an_offline_gateway_alert_with_nobody_calling_check(
        tmp_path: Path, storage: dict[str, str]) -> None:
    mosquitto_binary()  # skip (or fail on CI) without it
    broker = start_broker(tmp_path / "broker", prefer="mosquitto")
    signer = new_signer()
    (tmp_path / "gateways").mkdir()
    (tmp_path / "gateways" / f"{LIVE_GW}.json").write_text(
        json.dumps(enrollment_record(signer, LIVE_GW)))
    # The incomer's meter is on the live gateway, the feeder's on the silent one.
    two_gateways = PLANT_TOML.replace(f'gateway = "{GATEWAY}"\nmeter = "m1"',
                                      f'gateway = "{LIVE_GW}"\nmeter = "m1"').replace(
        f'gateway = "{GATEWAY}"\nmeter = "m2"', f'gateway = "{SILENT_GW}"\nmeter = "m2"')
    plant_dir(tmp_path, two_gateways, extra={"alerts.toml": OFFLINE})
    config = parse_config({"mqtt": {"host": "127.0.0.1", "port": broker.port,
                                    "client_id": f"rx-{time.monotonic_ns()}"},
                           "storage": storage, "registry": {"dir": "gateways"},
                           "alerts": {"plant": "plant", "interval_s": 10}}, base_dir=tmp_path)
    assert config.alerts is not None
    # The schema's 10 s minimum would make this test slow; the wiring is what is tested.
    config = replace(config, alerts=replace(config.alerts, interval_s=0.2))
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            run(config, stop, ready=ready)
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    service = threading.Thread(target=receive, daemon=True)
    service.start()
    store = None
    try:
        wait_for(lambda: ready.is_set() or bool(errors), "the receiver to subscribe")
        assert not errors, errors
        _publish(broker.port, f"nengtan/v1/{LIVE_GW}/batch", Batches(signer, LIVE_GW).seal(1).encode())
        store = open_store(config.storage, create=False)
        wait_for(lambda: LIVE_GW in store.gateway_last_seen(), "the envelope to be stored")
        # The live gateway may have been offline at an evaluation before its envelope came.
        wait_for(lambda: [a.subject for a in store.accounting_alerts(state="live")]
                 == [SILENT_GW], "the silent gateway's alert alone", timeout=15)
        [alert] = store.accounting_alerts(state="live")
        assert (alert.kind, alert.rule) == ("gateway_offline", "gw-offline")
        assert alert.detail == "no envelope ever received from this gateway"
    finally:
        stop.set()
        service.join(timeout=15)
        if store is not None:
            store.close()
        broker.stop()
    assert not service.is_alive() and not errors, errors
    # run() stopped its runner too.
    assert not [t for t in threading.enumerate() if t.name == "alert-runner"]
