"""Accounting alerts: the store's lifecycle, the rules file, each rule kind, and the CLI.

The store-backed tests run on both backends (PostgreSQL marked ``integration``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from accounting_helpers import GATEWAY, HOUR, JUNE, MINUTE, Feeder, plant_dir
from click.testing import CliRunner

from cloud_receiver.accounting.alerts import evaluate, load_rules
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.cli import receiver
from cloud_receiver.store import Store, StoredEnvelope, open_store
from nengtan.errors import ConfigError, StoreError
from tests.integration.receiver.pg_helpers import BACKENDS, backend_store, fresh_schema


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Overrides the conftest's SQLite-only store for this module (and so the feeder's)."""
    with backend_store(request.param) as s:
        yield s


def test_alert_lifecycle_in_the_store(store: Store) -> None:
    a = store.raise_accounting_alert("balance", "incomer", "bal", 1000, "loss 6 %")
    assert (a.state, a.first_seen_ms, a.last_seen_ms, a.occurrences) == ("open", 1000, 1000, 1)
    # Seen again: the same live alert is refreshed, not duplicated.
    b = store.raise_accounting_alert("balance", "incomer", "bal", 2000, "loss 7 %")
    assert (b.id, b.first_seen_ms, b.last_seen_ms, b.occurrences, b.detail) == (
        a.id, 1000, 2000, 2, "loss 7 %")
    acked = store.ack_accounting_alert(a.id, "Wang Li", 2500)
    assert (acked.state, acked.acked_by, acked.acked_ms) == ("acknowledged", "Wang Li", 2500)
    # The first acknowledgement stands; a refresh keeps the state.
    assert store.ack_accounting_alert(a.id, "Zhao", 2600).acked_by == "Wang Li"
    assert store.raise_accounting_alert("balance", "incomer", "bal", 3000, "x").state == "acknowledged"
    assert store.close_accounting_alert(a.id, 4000) is True
    assert store.close_accounting_alert(a.id, 4001) is False
    with pytest.raises(StoreError, match=f"#{a.id} is closed"):
        store.ack_accounting_alert(a.id, "Wang Li", 5000)
    with pytest.raises(StoreError, match="no accounting alert #999"):
        store.ack_accounting_alert(999, "Wang Li", 5000)
    # The condition recurring opens a new alert; the closed one is history.
    again = store.raise_accounting_alert("balance", "incomer", "bal", 6000, "loss 8 %")
    assert again.id != a.id and again.state == "open"
    store.raise_accounting_alert("gateway_offline", GATEWAY, "off", 6000, "silent")
    assert [x.id for x in store.accounting_alerts()] == [again.id + 1, again.id, a.id]
    assert [x.subject for x in store.accounting_alerts(state="live", kind="balance")] == ["incomer"]
    closed = store.accounting_alerts(state="closed")
    assert [(x.id, x.closed_ms, x.occurrences) for x in closed] == [(a.id, 4000, 3)]


def add_envelope(store: Store, seq: int, received_ms: int, gateway: str = GATEWAY) -> None:
    with store.transaction(lock=gateway) as txn:
        txn.add_envelope(StoredEnvelope(gateway, 1, seq, seq, f"h{seq}", None, "k", received_ms,
                                        "t"), [])


def test_gateway_last_seen_is_the_newest_received_envelope(store: Store) -> None:
    add_envelope(store, 1, 5_000)
    add_envelope(store, 2, 9_000)
    add_envelope(store, 1, 7_000, "gw-other")
    assert store.gateway_last_seen() == {"gw-other": 7_000, GATEWAY: 9_000}


RULES = """
[[rule]]
name = "feeder-overload"
kind = "threshold"
points = ["line1-feeder"]
period = "15m"
lookback_minutes = 60
max_kw = 100

[[rule]]
name = "silent-point"
kind = "missing_data"
after_minutes = 30

[[rule]]
name = "gateway-offline"
kind = "gateway_offline"
after_minutes = 10

[[rule]]
name = "incomer-balance"
kind = "balance"
period = "1h"
lookback_minutes = 120
max_loss_pct = 5

[[rule]]
name = "backwards"
kind = "counter_anomaly"
lookback_minutes = 120
"""


def test_rules_file_problems_are_all_reported(tmp_path: Path) -> None:
    bad = """
[[rule]]
name = "a"
kind = "threshold"
points = ["nope"]
period = "5m"
max_kw = 10

[[rule]]
name = "a"
kind = "smoke"

[[rule]]
name = "b"
kind = "missing_data"
after_minutes = 0
colour = "red"
"""
    plant = load_plant(plant_dir(tmp_path, extra={"alerts.toml": bad}))
    with pytest.raises(ConfigError) as info:
        load_rules(plant)
    assert info.value.problems == (
        "At 'rule[0].period': expected one of 15m, 1h, 1d",
        "At 'rule[0].points': 'nope' is not a metering point of the plant",
        "At 'rule[1].name': 'a' is used by an earlier rule",
        "At 'rule[1].kind': 'smoke' is not one of threshold, missing_data, gateway_offline,"
        " balance, counter_anomaly",
        "At 'rule[2]': unknown key(s) for a missing_data rule: colour",
        "At 'rule[2].after_minutes': expected a whole number of minutes > 0",
    )
    assert str(tmp_path / "plant" / "alerts.toml") in str(info.value)


def test_each_rule_kind_raises_then_closes_when_the_condition_clears(
        tmp_path: Path, store: Store, feeder: Feeder) -> None:
    plant = load_plant(plant_dir(tmp_path, extra={"alerts.toml": RULES}))
    rules = load_rules(plant)
    # 00:00-02:00, readings every 15 min. Incomer m1: 30 kWh per 15 min (120 kWh/h).
    # Feeder m2: 20 kWh per 15 min = 80 kW mean, except 00:45-01:00 with 30 kWh = 120 kW.
    feeder.steady("m1", JUNE, JUNE + 2 * HOUR, 15 * MINUTE, 0.0, 30.0)
    m2 = [0.0, 20.0, 40.0, 60.0, 90.0, 110.0, 130.0, 150.0, 170.0]
    feeder.add("m2", [(JUNE + i * 15 * MINUTE, v) for i, v in enumerate(m2)])
    add_envelope(store, 1, JUNE + 2 * HOUR)  # the gateway's latest envelope arrived at 02:00
    now = JUNE + 2 * HOUR + 5 * MINUTE
    result = evaluate(store, plant, rules, now)
    found = {(a.rule, a.subject): a.detail for a in result.raised}
    # Threshold window: the last 60 min of whole buckets, 01:00-02:00: all at 80 kW. Nothing.
    # Balance over 00:00-02:00 (1h buckets): incomer 8 × 30 = 240 kWh; feeder 170 kWh;
    # loss 70 kWh = 70 / 240 × 100 = 29.17 % > 5 %.
    assert set(found) == {("incomer-balance", "incomer")}
    assert "parent 240 kWh, sub-meters 170 kWh; loss 29.17 % exceeds ±5 %" in found[
        "incomer-balance", "incomer"]
    # 01:05: the 00:45 bucket (30 kWh in 15 min = 120 kW) is within the last hour.
    result = evaluate(store, plant, rules, JUNE + HOUR + 5 * MINUTE)
    over = {a.subject: a.detail for a in result.raised if a.rule == "feeder-overload"}
    assert over == {"line1-feeder": "1 15m bucket(s) out of range in the last 60 min: "
                                    "2025-06-01 00:45 120 kW > 100 kW"}
    # 03:00: no reading since 02:00 (> 30 min), the gateway silent for 60 min (> 10 min), the
    # overload gone: threshold closes, missing data and offline open.
    later = JUNE + 3 * HOUR
    result = evaluate(store, plant, rules, later)
    raised = {(a.rule, a.subject) for a in result.raised}
    assert {("silent-point", "incomer"), ("silent-point", "line1-feeder"),
            ("gateway-offline", GATEWAY)} <= raised
    assert [a.rule for a in result.closed] == ["feeder-overload"]
    offline = next(a for a in result.raised if a.kind == "gateway_offline")
    assert offline.detail == ("last envelope received 2025-06-01 02:00, 60 min ago"
                              " (limit 10 min)")
    # A counter going backwards at 03:15 is an anomaly nothing explains.
    feeder.add("m2", [(later + 15 * MINUTE, 100.0)])
    result = evaluate(store, plant, rules, later + 20 * MINUTE)
    anomaly = [a for a in result.raised if a.kind == "counter_anomaly"]
    assert [(a.subject, a.detail) for a in anomaly] == [
        ("line1-feeder", "1 unexplained counter jump(s) in the last 120 min; first at 2025-06-01"
                         " 03:15: 170 → 100 (counter went backwards; counted as 0)")]
    # Running again is idempotent: the same live alerts are refreshed.
    live_before = {a.id for a in store.accounting_alerts(state="live")}
    evaluate(store, plant, rules, later + 21 * MINUTE)
    assert {a.id for a in store.accounting_alerts(state="live")} == live_before


def test_alerts_cli_check_list_ack(tmp_path: Path) -> None:
    config = tmp_path / "receiver.toml"
    (tmp_path / "gateways").mkdir()
    config.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n')
    db = open_store(tmp_path / "r.db")
    add_envelope(db, 1, JUNE)
    db.close()
    plant = plant_dir(tmp_path, extra={"alerts.toml": RULES})
    runner = CliRunner()
    result = runner.invoke(receiver, ["alerts", "check", "--config", str(config), "--plant",
                                      str(plant), "--json"])
    assert result.exit_code == 0, result.output
    checked = json.loads(result.output)
    assert checked["rules"] == 5
    offline = next(a for a in checked["raised"] if a["kind"] == "gateway_offline")
    result = runner.invoke(receiver, ["alerts", "ack", "--config", str(config),
                                      str(offline["id"]), "--by", "Wang Li", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["state"] == "acknowledged"
    result = runner.invoke(receiver, ["alerts", "list", "--config", str(config), "--kind",
                                      "gateway_offline", "--json"])
    (listed,) = json.loads(result.output)["alerts"]
    assert (listed["id"], listed["acked_by"]) == (offline["id"], "Wang Li")
    text = runner.invoke(receiver, ["alerts", "list", "--config", str(config)]).output
    assert f"#{offline['id']} acknowledged" in text and "acknowledged by Wang Li" in text
    result = runner.invoke(receiver, ["alerts", "ack", "--config", str(config), "4242"])
    assert result.exit_code == 1 and "no accounting alert #4242" in result.output


@pytest.mark.integration
def test_two_receivers_raising_the_same_new_condition_share_one_alert() -> None:
    import threading

    with fresh_schema() as (_, url):
        stores = [open_store(url), open_store(url)]
        barrier = threading.Barrier(2)
        ids: list[int] = []

        def raise_many(s: Store) -> None:
            barrier.wait()
            for i in range(50):
                ids.append(s.raise_accounting_alert("balance", "incomer", "bal", i, "x").id)

        threads = [threading.Thread(target=raise_many, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        (alert,) = stores[0].accounting_alerts()
        assert set(ids) == {alert.id} and alert.occurrences == 100
        for s in stores:
            s.close()
