"""Energy from counters, and the report's kgce and kgCO2, against arithmetic done by hand."""

from __future__ import annotations

from datetime import date, datetime, UTC
from zoneinfo import ZoneInfo

import pytest
from receiver_helpers import TOPIC, Batches

from cloud_receiver.config import CarbonConfig
from cloud_receiver.energy import daily_energy
from cloud_receiver.ingest import Ingestor
from cloud_receiver.report import build_report, render_text
from cloud_receiver.store import CounterSample, Store

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_CARBON = CarbonConfig("statistical", "henan", 2023, "Asia/Shanghai")


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def samples(*points: tuple[str, float], meter: str = "m1") -> list[CounterSample]:
    return [CounterSample("gw", meter, ms(t), 1, i + 1, v) for i, (t, v) in enumerate(points)]


def test_consecutive_counter_values_become_interval_kwh() -> None:
    # 100.0 → 100.5 → 101.25: intervals of 0.5 and 0.75 kWh, 1.25 kWh in all.
    result = daily_energy(samples(("2025-06-01T09:00+08:00", 100.0),
                                  ("2025-06-01T09:15+08:00", 100.5),
                                  ("2025-06-01T09:30+08:00", 101.25)), SHANGHAI)
    [day] = result.days
    assert (day.day, day.kwh, day.intervals) == (date(2025, 6, 1), 1.25, 2)
    assert result.anomalies == ()


def test_a_counter_going_backwards_is_flagged_and_counts_as_zero() -> None:
    # 100 → 102 (+2) → 5 (meter replaced: flagged, 0) → 6 (+1): 3 kWh, never 3 - 97.
    result = daily_energy(samples(("2025-06-01T09:00+08:00", 100.0),
                                  ("2025-06-01T10:00+08:00", 102.0),
                                  ("2025-06-01T11:00+08:00", 5.0),
                                  ("2025-06-01T12:00+08:00", 6.0)), SHANGHAI)
    assert [d.kwh for d in result.days] == [3.0]
    [anomaly] = result.anomalies
    assert (anomaly.previous, anomaly.current, anomaly.delta) == (102.0, 5.0, -97.0)


def test_an_interval_counts_on_the_shanghai_day_of_its_end_reading() -> None:
    # Midnight in Shanghai is 16:00 UTC. 23:40 → 23:50 (0.2 kWh) ends on 31 May; 23:50 → 00:10
    # (0.4 kWh) ends on 1 June. In UTC both would fall on 31 May.
    points = samples(("2025-05-31T23:40+08:00", 9.8), ("2025-05-31T23:50+08:00", 10.0),
                     ("2025-06-01T00:10+08:00", 10.4))
    shanghai = {d.day: d.kwh for d in daily_energy(points, SHANGHAI).days}
    assert shanghai == {date(2025, 5, 31): pytest.approx(0.2), date(2025, 6, 1): pytest.approx(0.4)}
    utc = {d.day: d.kwh for d in daily_energy(points, ZoneInfo("UTC")).days}
    assert utc == {date(2025, 5, 31): pytest.approx(0.6)}


def test_meters_are_kept_apart_and_readings_taken_in_sequence_order() -> None:
    a = samples(("2025-06-01T09:00+08:00", 10.0), ("2025-06-01T09:30+08:00", 12.0), meter="a")
    b = samples(("2025-06-01T09:00+08:00", 500.0), ("2025-06-01T09:30+08:00", 501.0), meter="b")
    shuffled = [b[1], a[1], b[0], a[0]]  # arrival order does not matter
    assert {d.meter: d.kwh for d in daily_energy(shuffled, SHANGHAI).days} == {"a": 2.0, "b": 1.0}


def test_a_wall_clock_stepped_back_changes_no_amount() -> None:
    # seq 1 at 12:00, then the clock is stepped back 3 h: seq 2 and 3 carry 09:xx timestamps.
    # In seq order the counter runs 100 → 101 → 102.5: 2.5 kWh, no anomaly. Sorted by time it
    # would read 101 → 102.5 → 100 and see the counter run backwards.
    stepped = samples(("2025-06-01T12:00+08:00", 100.0), ("2025-06-01T09:00+08:00", 101.0),
                      ("2025-06-01T09:10+08:00", 102.5))
    result = daily_energy(stepped, SHANGHAI)
    assert sum(d.kwh for d in result.days) == 2.5 and not result.anomalies


def _ingest_counters(ingestor: Ingestor, batches: Batches, values: list[float]) -> None:
    assert ingestor.ingest(TOPIC, batches.seal(1, len(values), values=values).encode()).readings


def test_the_report_converts_kwh_with_the_default_henan_2023_factor(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest_counters(ingestor, batches, [100.0, 100.5, 101.25])
    report = build_report(store, DEFAULT_CARBON)
    [row] = report.rows
    # 1.25 kWh × 0.1229 kgce/kWh = 0.153625 kgce; 1.25 kWh × 0.5897 kgCO2/kWh = 0.737125 kgCO2.
    assert row.kwh == 1.25
    assert row.kgce == pytest.approx(0.153625, abs=1e-12)
    assert row.kgco2 == pytest.approx(0.737125, abs=1e-12)
    out = report.as_dict()
    assert out["rows"] == [{"gateway": "gw-zz-01", "meter": "m1", "day": "2025-06-01",
                            "kwh": 1.25, "kgce": 0.153625, "kgco2": 0.737125, "intervals": 2}]
    assert report.factors.grid_co2.value == 0.5897
    assert report.factors.grid_co2.key == "statistical/henan/2023"
    assert report.factors.coal.value == 0.1229


def test_the_carbon_market_regime_uses_its_own_factor(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest_counters(ingestor, batches, [0.0, 10.0])
    market = CarbonConfig("carbon_market", "national", 2022, "Asia/Shanghai")
    [row] = build_report(store, market).rows
    assert row.kgco2 == pytest.approx(5.703)  # 10 kWh × 0.5703 kgCO2/kWh


def test_the_report_states_factors_quarantine_duplicates_and_anomalies(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    token = batches.seal(1, 3, values=[100.0, 99.0, 101.0]).encode()
    ingestor.ingest(TOPIC, token)
    ingestor.ingest(TOPIC, token)
    ingestor.ingest(TOPIC, b"garbage")
    report = build_report(store, DEFAULT_CARBON)
    assert (report.quarantine, report.duplicates, len(report.anomalies)) == ({"malformed": 1}, 1, 1)
    text = render_text(report)
    for expected in ("0.5897 kgCO2/kWh", "statistical/henan/2023", "0.1229 kgce/kWh",
                     "GB/T 2589-2020", "公告2025年第47号", "malformed 1", "Asia/Shanghai",
                     "Counter anomalies (counted as 0 kWh): 1"):
        assert expected in text


def test_the_day_filter_keeps_one_local_day(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    # The helper stamps cycle s at T0 + s minutes, T0 = 2025-06-01T00:00Z = 08:00 in Shanghai.
    _ingest_counters(ingestor, batches, [1.0, 2.0])
    assert build_report(store, DEFAULT_CARBON, day=date(2025, 6, 1)).rows
    assert not build_report(store, DEFAULT_CARBON, day=date(2025, 6, 2)).rows
    assert datetime.fromtimestamp(1_748_736_000, UTC).astimezone(SHANGHAI).hour == 8
