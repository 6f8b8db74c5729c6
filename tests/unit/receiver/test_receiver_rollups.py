"""Rollups kept at ingest equal a rebuild from the stored points, whatever the arrival order."""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

import pytest
from receiver_helpers import GATEWAY, T0, TOPIC, Batches

from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.rollups import STALE_COUNTER, bucket_start, rebuild, rebuild_all
from cloud_receiver.store import CounterPoint, Store

SHANGHAI = ZoneInfo("Asia/Shanghai")
MINUTE = 60_000  # Batches puts cycle s at T0 + s minutes


def _rollups(store: Store, period: str) -> dict[int, tuple[float, int, int, int]]:
    return {r.start_ms: (round(r.amount, 9), r.intervals, r.anomalies, r.long_intervals)
            for r in store.rollups(period, gateway=GATEWAY, meter="m1",
                                   measurement="active_energy_import")
            if r.intervals}


def _rebuilt(store: Store, period: str) -> dict[int, tuple[float, int, int, int]]:
    points = store.counter_points(GATEWAY, "m1", "active_energy_import")
    return {d.start_ms: (round(d.amount, 9), d.intervals, d.anomalies, d.long_intervals)
            for d in rebuild(points, SHANGHAI) if d.period == period and d.intervals}


def test_buckets_start_on_the_period_and_days_at_local_midnight() -> None:
    t = T0 + 3 * 3_600_000 + 17 * MINUTE + 5_000  # 2025-06-01 03:17:05 UTC = 11:17:05 CST
    assert bucket_start("15m", t, SHANGHAI) == T0 + 3 * 3_600_000 + 15 * MINUTE
    assert bucket_start("1h", t, SHANGHAI) == T0 + 3 * 3_600_000
    # Local midnight of 2025-06-01 in Shanghai is 2025-05-31 16:00 UTC.
    assert bucket_start("1d", t, SHANGHAI) == T0 - 8 * 3_600_000
    assert bucket_start("1d", T0 - 8 * 3_600_000 - 1, SHANGHAI) == T0 - 32 * 3_600_000


def test_a_reading_on_the_boundary_closes_the_bucket_before_it(store: Store,
                                                                ingestor: Ingestor,
                                                                batches: Batches) -> None:
    # Cycles 15 and 30 are read at 00:15 and 00:30 UTC: 100+15 → 100+30 kWh is 15 kWh used
    # in 00:15–00:30, so it belongs to the bucket starting 00:15, not the one at 00:30.
    ingestor.ingest(TOPIC, batches.seal(15, values=[115.0]).encode())
    ingestor.ingest(TOPIC, batches.seal(30, values=[130.0], prev=True).encode())
    [bucket] = store.rollups("15m", gateway=GATEWAY)
    assert (bucket.start_ms, bucket.amount, bucket.intervals) == (T0 + 15 * MINUTE, 15.0, 1)
    assert bucket.long_intervals == 0  # 15 minutes is not longer than 15 minutes


def test_late_data_splits_the_interval_it_falls_into(store: Store, ingestor: Ingestor,
                                                     batches: Batches) -> None:
    # 1..10 and 51..60 arrive first; the interval 10→51 (41 kWh, 41 min) is booked to the
    # bucket of cycle 51 and marked long. Then 11..50 arrives late and splits it.
    first = batches.seal(1, 10)
    late = batches.seal(11, 50)
    last = batches.seal(51, 60)
    for token in (first, last):
        assert ingestor.ingest(TOPIC, token.encode()).status is Status.ACCEPTED
    # 9 + 1 + 9 intervals; the 41-minute one is long for a 15-minute bucket, not for an hour.
    assert _rollups(store, "1h") == {T0: (59.0, 19, 0, 0)}
    assert _rollups(store, "15m") == {T0: (9.0, 9, 0, 0), T0 + 45 * MINUTE: (50.0, 10, 0, 1)}

    assert ingestor.ingest(TOPIC, late.encode()).status is Status.ACCEPTED
    assert _rollups(store, "1h") == {T0: (59.0, 59, 0, 0)}
    assert _rollups(store, "15m") == {T0: (14.0, 14, 0, 0), T0 + 15 * MINUTE: (15.0, 15, 0, 0),
                                      T0 + 30 * MINUTE: (15.0, 15, 0, 0),
                                      T0 + 45 * MINUTE: (15.0, 15, 0, 0)}


def test_a_counter_going_backwards_counts_zero_and_is_an_anomaly(store: Store,
                                                                  ingestor: Ingestor,
                                                                  batches: Batches) -> None:
    ingestor.ingest(TOPIC, batches.seal(1, 3, values=[500.0, 501.5, 2.0]).encode())
    ingestor.ingest(TOPIC, batches.seal(4, 4, values=[3.25]).encode())
    # 500 → 501.5 (1.5), 501.5 → 2.0 (replaced meter: 0, anomaly), 2.0 → 3.25 (1.25)
    assert _rollups(store, "1h") == {T0: (2.75, 3, 1, 0)}


def test_readings_that_are_not_good_are_not_points(store: Store, ingestor: Ingestor,
                                                   batches: Batches) -> None:
    ingestor.ingest(TOPIC, batches.seal(1, 3, values=[10.0, None, 12.0]).encode())
    assert [p.seq for p in store.counter_points(GATEWAY, "m1", "active_energy_import")] == [1, 3]
    assert _rollups(store, "1h") == {T0: (2.0, 1, 0, 0)}


def test_rollups_for_unknown_periods_are_refused(store: Store) -> None:
    with pytest.raises(Exception, match="no rollup period"):
        store.rollups("5m")


@pytest.mark.parametrize("seed", range(6))
def test_any_arrival_order_gives_the_rollups_of_a_rebuild(seed: int, store: Store,
                                                          ingestor: Ingestor,
                                                          batches: Batches) -> None:
    rng = random.Random(seed)
    # Three epochs of 1..120 cycles cut into random envelopes; values rise by random steps
    # with a reset in the middle epoch; envelopes arrive shuffled.
    tokens: list[str] = []
    value = 1000.0
    for epoch in (1, 2, 3):
        batches.chain.clear()
        seq = 1
        while seq <= 120:
            last = min(120, seq + rng.randint(0, 9))
            values = []
            for s in range(seq, last + 1):
                value = 5.0 if (epoch == 2 and s == 60) else value + rng.choice((0.0, 0.25, 1.5))
                values.append(value)
            tokens.append(batches.seal(seq, last, epoch=epoch, values=values))
            seq = last + 1
    rng.shuffle(tokens)
    for i, token in enumerate(tokens):
        assert ingestor.ingest(TOPIC, token.encode()).status is Status.ACCEPTED
        if i % 7 == 0:  # check along the way too, not only at the end
            for period in ("15m", "1h", "1d"):
                assert _rollups(store, period) == _rebuilt(store, period)
    for period in ("15m", "1h", "1d"):
        assert _rollups(store, period) == _rebuilt(store, period)
    points = store.counter_points(GATEWAY, "m1", "active_energy_import")
    assert len(points) == 360
    # Epochs interleave in time (each restarts at T0), so totals are compared, not buckets.
    total = sum(r.amount for r in store.rollups("1d", gateway=GATEWAY))
    expected = sum(max(0.0, b.value - a.value) for a, b in zip(points, points[1:]))
    assert total == pytest.approx(expected, abs=1e-9)


def test_rebuild_orders_points_by_sequence_not_by_time() -> None:
    # A clock stepped back: cycle 2 carries an earlier time than cycle 1. The interval is
    # still 1 → 2, booked by cycle 2's time.
    a = CounterPoint("m", "active_energy_import", 1, 1, T0 + 10 * MINUTE, 1.0)
    b = CounterPoint("m", "active_energy_import", 1, 2, T0 - 50 * MINUTE, 3.0)
    [hour] = [d for d in rebuild([b, a], SHANGHAI) if d.period == "1h"]
    assert (hour.start_ms, hour.amount, hour.intervals) == (T0 - 3_600_000, 2.0, 1)


def test_rebuild_all_restores_cleared_rollups_and_the_stale_mark(store: Store,
                                                                  ingestor: Ingestor,
                                                                  batches: Batches) -> None:
    for seq in range(1, 40, 5):
        ingestor.ingest(TOPIC, batches.seal(seq, seq + 4).encode())
    before = {p: _rollups(store, p) for p in ("15m", "1h", "1d")}
    with store.transaction(lock=GATEWAY) as txn:
        txn.clear_rollups(GATEWAY)
    store.bump_counter(STALE_COUNTER)
    assert store.rollups("1h") == []
    assert rebuild_all(store, SHANGHAI) == 1
    assert {p: _rollups(store, p) for p in ("15m", "1h", "1d")} == before
    assert store.counters().get(STALE_COUNTER, 0) == 0
