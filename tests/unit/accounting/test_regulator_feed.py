"""The regulator feed without sockets: day and month messages built from stored counters
(completeness, gaps as null, daily-vs-monthly check), and delivery through a scripted adapter
(retries, back-off, audit, idempotent resend). The real HTTP server tests are in
tests/integration/accounting/test_feed_http.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from accounting_helpers import DAY, HOUR, JUNE, MINUTE, Feeder

from cloud_receiver.accounting.feed import FeedMessage, build_day, build_month, consistency
from cloud_receiver.accounting.feed_send import (
    Attempt,
    AuditLog,
    deliver,
    load_feed_config,
)
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.store import Store
from nengtan.errors import ConfigError

Q = 15 * MINUTE
ENT = "91410100MA00000000"


def test_a_full_day_is_96_intervals_and_100_percent(store: Store, feeder: Feeder,
                                                    plant_path: Path) -> None:
    # Incomer m1: a reading every 15 min from 00:00 to 24:00, +2.5 kWh each: 96 intervals.
    feeder.steady("m1", JUNE, JUNE + DAY, Q, 1000.0, 2.5)
    msg = build_day(store, load_plant(plant_path), ENT, date(2025, 6, 1))
    (row,) = msg.body["points"]  # only the level-1 point is reported by default
    assert row["point"] == "incomer" and row["unit"] == "kWh"
    assert row["total"] == 240.0  # 96 × 2.5
    assert row["kgce"] == 29.496  # 240 kWh × 0.1229 kgce/kWh (GB/T 2589 当量值)
    assert row["kgce_factor"]["value"] == 0.1229
    assert (row["expected"], row["received"], row["completeness_pct"]) == (96, 96, 100.0)
    assert row["meets_90pct"] and row["gaps"] == []
    assert len(row["intervals"]) == 96
    assert row["intervals"][0] == {"start": "2025-06-01T00:00:00+08:00", "value": 2.5,
                                   "quality": "ok"}
    assert msg.body["period_start"] == "2025-06-01T00:00:00+08:00"  # aligned to local midnight
    assert msg.body["period_end"] == "2025-06-02T00:00:00+08:00"


def test_a_six_hour_gap_is_null_not_zero_and_completeness_says_so(
        store: Store, feeder: Feeder, plant_path: Path) -> None:
    # Readings 00:00–06:00 every 15 min (+1 kWh each, 24 intervals), none until 12:00 (the
    # counter then reads +30 kWh more), then 12:00–24:00 every 15 min (+1 each, 48 intervals).
    v = feeder.steady("m1", JUNE, JUNE + 6 * HOUR, Q, 0.0, 1.0)  # 24.0
    feeder.add("m1", [(JUNE + 12 * HOUR, v + 30.0)])
    feeder.steady("m1", JUNE + 12 * HOUR + Q, JUNE + DAY, Q, v + 31.0, 1.0)
    (row,) = build_day(store, load_plant(plant_path), ENT, date(2025, 6, 1)).body["points"]
    # Total = counter difference 0 → 24 + 30 + 48 = 102 kWh: the gap's energy is real (the
    # counter counted it) but it is booked where it ends, not spread over the 6 hours.
    assert row["total"] == 102.0
    # 24 buckets 06:00–11:45 are a gap: 23 empty + 11:45 holding the long interval.
    assert (row["expected"], row["received"]) == (96, 72)
    assert row["completeness_pct"] == 75.0 and not row["meets_90pct"]  # 72 / 96
    assert row["gaps"] == [{"start": "2025-06-01T06:00:00+08:00",
                            "end": "2025-06-01T12:00:00+08:00", "buckets": 24, "empty": 23,
                            "long_interval": 1}]
    by_start = {i["start"][11:16]: i for i in row["intervals"]}
    assert by_start["06:00"] == {"start": "2025-06-01T06:00:00+08:00", "value": None,
                                 "quality": "missing"}
    assert by_start["11:45"]["quality"] == "partial" and by_start["11:45"]["value"] == 30.0
    assert sum(i["value"] or 0 for i in row["intervals"]) == row["total"]


def test_an_unfinished_day_leaves_later_buckets_pending(store: Store, feeder: Feeder,
                                                        plant_path: Path) -> None:
    feeder.steady("m1", JUNE, JUNE + 6 * HOUR, Q, 0.0, 1.0)
    (row,) = build_day(store, load_plant(plant_path), ENT, date(2025, 6, 1),
                       now_ms=JUNE + 6 * HOUR).body["points"]
    assert (row["expected"], row["received"], row["completeness_pct"]) == (24, 24, 100.0)
    assert row["intervals"][24]["quality"] == "pending"


def test_month_statistic_and_daily_vs_monthly(store: Store, feeder: Feeder,
                                              plant_path: Path) -> None:
    # Two full days: 96 × 1 kWh on June 1, 96 × 2 kWh on June 2 (hourly readings would be
    # long intervals for the 15-min buckets, so readings are every 15 min).
    v = feeder.steady("m1", JUNE, JUNE + DAY, Q, 0.0, 1.0)
    feeder.steady("m1", JUNE + DAY + Q, JUNE + 2 * DAY, Q, v + 2.0, 2.0)
    msg = build_month(store, load_plant(plant_path), ENT, 2025, 6)
    (row,) = msg.body["points"]
    assert row["total"] == 288.0  # 96 + 192
    assert row["days"][:3] == [{"day": "2025-06-01", "value": 96.0},
                               {"day": "2025-06-02", "value": 192.0},
                               {"day": "2025-06-03", "value": 0.0}]
    assert row["consistency"] == {"daily_sum": 288.0, "monthly": 288.0, "deviation_pct": 0.0,
                                  "within_5pct": True}
    # June has 30 × 96 = 2880 due buckets; 192 covered: 6.666…%
    assert (row["expected"], row["received"]) == (2880, 192)
    assert row["completeness_pct"] == 6.666667 and not row["meets_90pct"]
    assert msg.body["period_start"] == "2025-06-01T00:00:00+08:00"  # aligned to the 1st
    assert msg.body["period_end"] == "2025-07-01T00:00:00+08:00"
    assert msg.body["consistent"] is True


@pytest.mark.parametrize(("daily", "monthly", "deviation", "ok"), [
    (105.0, 100.0, 5.0, True),     # |105 − 100| / 100 × 100 = 5 % → within (≤ 5 %)
    (105.1, 100.0, 5.1, False),    # 5.1 % → outside
    (94.0, 100.0, 6.0, False),     # |94 − 100| / 100 = 6 %
    (0.0, 0.0, 0.0, True),         # nothing used, nothing reported
    (1.0, 0.0, None, False),       # daily energy with a zero month cannot be consistent
])
def test_consistency_golden(daily: float, monthly: float, deviation: float | None,
                            ok: bool) -> None:
    got = consistency(daily, monthly)
    assert got["deviation_pct"] == deviation and got["within_5pct"] is ok


def test_same_period_same_id_and_bytes(store: Store, feeder: Feeder, plant_path: Path) -> None:
    feeder.steady("m1", JUNE, JUNE + DAY, Q, 0.0, 1.0)
    plant = load_plant(plant_path)
    a = build_day(store, plant, ENT, date(2025, 6, 1))
    b = build_day(store, plant, ENT, date(2025, 6, 1))
    assert (a.message_id, a.payload, a.digest) == (b.message_id, b.payload, b.digest)
    assert a.message_id != build_day(store, plant, ENT, date(2025, 6, 2)).message_id
    assert json.loads(a.payload)["message_id"] == a.message_id


@dataclass
class Scripted:
    """An adapter that answers from a script, recording what it was given."""

    answers: list[Attempt]
    target: str = "scripted://platform"
    sent: list[bytes] = field(default_factory=list)

    def attempt(self, message: FeedMessage) -> Attempt:
        self.sent.append(message.payload)
        return self.answers.pop(0)


def _msg(value: int = 1) -> FeedMessage:
    return FeedMessage("id-1", "day", "2025-06-01", {"message_id": "id-1", "v": value})


def test_retries_with_backoff_then_accepted(tmp_path: Path) -> None:
    audit, waits = AuditLog(tmp_path / "audit.jsonl"), []
    adapter = Scripted([Attempt(False, True, None, "ConnectError"),
                        Attempt(False, True, 503, "busy"),
                        Attempt(False, True, 429, "slow down", retry_after_s=7.0),
                        Attempt(True, False, 200, "ok")])
    d = deliver(adapter, _msg(), audit, retries=4, backoff_s=1.0, backoff_max_s=60.0,
                sleep=waits.append)
    assert (d.outcome, d.attempts, d.status) == ("accepted", 4, 200)
    assert waits == [1.0, 2.0, 7.0]  # 1 × 2^0, 1 × 2^1, then the server's Retry-After
    lines = list(audit.entries())
    assert [e["outcome"] for e in lines] == ["retry", "retry", "retry", "accepted"]
    assert lines[0]["body"] == '{"message_id":"id-1","v":1}'  # the exact bytes, once
    assert all("body" not in e for e in lines[1:])
    assert {e["digest"] for e in lines} == {_msg().digest}


def test_gives_up_after_the_retries_and_says_failed(tmp_path: Path) -> None:
    audit, waits = AuditLog(tmp_path / "audit.jsonl"), []
    adapter = Scripted([Attempt(False, True, 502, "bad gateway")] * 3)
    d = deliver(adapter, _msg(), audit, retries=2, backoff_s=0.5, backoff_max_s=0.75,
                sleep=waits.append)
    assert (d.outcome, d.attempts) == ("failed", 3)
    assert waits == [0.5, 0.75]  # 0.5, then 1.0 capped at 0.75
    assert [e["outcome"] for e in audit.entries()] == ["retry", "retry", "failed"]


def test_a_client_error_is_not_retried(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    d = deliver(Scripted([Attempt(False, False, 400, "bad field")]), _msg(), audit,
                sleep=lambda s: pytest.fail("must not wait"))
    assert (d.outcome, d.attempts, d.status) == ("rejected", 1, 400)


def test_resend_is_idempotent_and_a_correction_is_sent(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    ok = Attempt(True, False, 200, "ok")
    adapter = Scripted([ok, ok, ok])
    assert deliver(adapter, _msg(), audit).outcome == "accepted"
    again = deliver(adapter, _msg(), audit)
    assert again.outcome == "already_accepted" and len(adapter.sent) == 1
    assert deliver(adapter, _msg(), audit, resend=True).outcome == "accepted"
    corrected = deliver(adapter, _msg(2), audit)  # late data changed the period's content
    assert corrected.outcome == "accepted"
    last = list(audit.entries())[-1]
    assert last["correction_of"] == _msg().digest and last["digest"] == _msg(2).digest


def test_feed_config_problems_are_listed(tmp_path: Path) -> None:
    (tmp_path / "feed.toml").write_text(
        '[feed]\nurl = "ftp://x"\nretries = 99\ntimeout_s = "slow"\ncolour = 1\n',
        encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_feed_config(tmp_path)
    text = str(info.value)
    for part in ("feed.colour': unknown key", "feed.enterprise_code': required",
                 "feed.url': must start with https://", "feed.retries': 0 to 20",
                 "feed.timeout_s': expected int or float"):
        assert part in text
