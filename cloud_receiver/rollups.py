"""Interval rollups of counters: 15-minute, hourly and daily amounts kept up to date at ingest.

Consecutive counter points of one series (gateway, meter, measurement), in the gateway's
(epoch, seq) order, make an interval; its amount is ``end.value - start.value`` and belongs to
the bucket holding ``end.ts_ms - 1``: a reading taken at 10:15:00 closes 10:00–10:15. A counter
that goes backwards contributes 0 and counts as an anomaly; an interval longer than the bucket is
counted in ``long_intervals`` so a report can say its amount was not spread over the gap.

Late data is why this is incremental rather than append-only: an envelope that lands between
two stored points splits the interval they formed. Its amount is taken back from the bucket it
was booked to and the two new intervals are booked instead, so the rollups always equal a
rebuild from the points (``rebuild`` is that rebuild, and the tests' oracle).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from cloud_receiver.store import ROLLUP_PERIODS, CounterPoint, RollupDelta, Store, StoreTxn
from nengtan.envelope import Batch
from nengtan.measurements import ROLLED_UP

Series = tuple[str, str]  # (meter, measurement)


@lru_cache(maxsize=4096)
def _local_midnight_ms(day_ordinal: int, tz: ZoneInfo) -> int:
    day = datetime.fromordinal(day_ordinal).replace(tzinfo=tz)
    return int(day.timestamp() * 1000)


def bucket_start(period: str, ts_ms: int, tz: ZoneInfo) -> int:
    """The start (Unix ms) of the ``period`` bucket that holds ``ts_ms``."""
    length = ROLLUP_PERIODS[period]
    if period != "1d":
        return ts_ms - ts_ms % length
    local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(tz)
    return _local_midnight_ms(local.toordinal(), tz)


def interval_deltas(start: CounterPoint, end: CounterPoint, tz: ZoneInfo,
                    sign: int = 1) -> list[RollupDelta]:
    """What the interval ``start → end`` adds to each period's bucket (``sign=-1`` takes it
    back)."""
    amount = end.value - start.value
    anomaly = amount < 0
    span = end.ts_ms - start.ts_ms
    at = end.ts_ms - 1
    return [RollupDelta(end.meter, end.measurement, period, bucket_start(period, at, tz),
                        sign * (0.0 if anomaly else amount), sign, sign * int(anomaly),
                        sign * int(span > length))
            for period, length in ROLLUP_PERIODS.items()]


def merge(deltas: Iterable[RollupDelta]) -> list[RollupDelta]:
    """Deltas summed per bucket, so each bucket is written once per envelope."""
    sums: dict[tuple[str, str, str, int], list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])
    for d in deltas:
        acc = sums[(d.meter, d.measurement, d.period, d.start_ms)]
        acc[0] += d.amount
        acc[1] += d.intervals
        acc[2] += d.anomalies
        acc[3] += d.long_intervals
    return [RollupDelta(m, n, p, s, a, int(i), int(x), int(li))
            for (m, n, p, s), (a, i, x, li) in sums.items()]


def batch_points(batch: Batch) -> dict[Series, list[CounterPoint]]:
    """The good readings of rolled-up counters in ``batch``, per series in seq order."""
    out: dict[Series, list[CounterPoint]] = {}
    epoch = batch.epoch
    for seq, meter, name, ts, value, quality in batch.rows():
        if name in ROLLED_UP and quality == "good" and value is not None:
            out.setdefault((meter, name), []).append(
                CounterPoint(meter, name, epoch, seq, ts, value))
    return out


def chain_deltas(before: CounterPoint | None, new: Sequence[CounterPoint],
                 after: CounterPoint | None, tz: ZoneInfo) -> list[RollupDelta]:
    """The rollup changes of inserting ``new`` (consecutive, in order) between the stored
    neighbours ``before`` and ``after``."""
    deltas: list[RollupDelta] = []
    if before is not None and after is not None:
        deltas += interval_deltas(before, after, tz, sign=-1)
    chain = ([before] if before is not None else []) + list(new) + (
        [after] if after is not None else [])
    for start, end in zip(chain, chain[1:]):
        deltas += interval_deltas(start, end, tz)
    return deltas


class _Booked:
    """``merge`` of ``interval_deltas`` over many intervals, summed as they come: ingest books
    about one interval per counter reading, and an object per interval and period was a third
    of its time (bench/ingest.py). The local day of consecutive points is looked up once."""

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._day = (0, 0)  # [start, end) of the local day looked up last
        self._sums: dict[tuple[str, str, str, int], list[float]] = {}

    def _day_start(self, at: int) -> int:
        start, end = self._day
        if start <= at < end:
            return start
        ordinal = datetime.fromtimestamp(at / 1000, tz=UTC).astimezone(self._tz).toordinal()
        start, end = _local_midnight_ms(ordinal, self._tz), _local_midnight_ms(ordinal + 1, self._tz)
        if start <= at < end:
            self._day = (start, end)
        return start

    def interval(self, start: CounterPoint, end: CounterPoint, sign: int) -> None:
        """Exactly what ``interval_deltas(start, end, tz, sign)`` adds."""
        amount = end.value - start.value
        anomaly = amount < 0
        span = end.ts_ms - start.ts_ms
        at = end.ts_ms - 1
        value, anomalies = sign * (0.0 if anomaly else amount), sign * int(anomaly)
        for period, length in ROLLUP_PERIODS.items():
            bucket = self._day_start(at) if period == "1d" else at - at % length
            key = (end.meter, end.measurement, period, bucket)
            acc = self._sums.get(key)
            if acc is None:
                acc = self._sums[key] = [0.0, 0, 0, 0]
            acc[0] += value
            acc[1] += sign
            acc[2] += anomalies
            acc[3] += sign * int(span > length)

    def deltas(self) -> list[RollupDelta]:
        return [RollupDelta(m, n, p, s, a, int(i), int(x), int(li))
                for (m, n, p, s), (a, i, x, li) in self._sums.items()]


def apply_batch(txn: StoreTxn, batch: Batch, tz: ZoneInfo) -> int:
    """Store the batch's counter points and correct the rollups; return how many points."""
    points = batch_points(batch)
    if not points:
        return 0
    neighbours = txn.counter_neighbours(batch.gateway, batch.epoch, batch.seq, batch.last,
                                        list(points))
    # What merge(chain_deltas(...) for every series) gives, in the same order of additions.
    booked = _Booked(tz)
    for series, new in points.items():
        before, after = neighbours.get(series, (None, None))
        if before is not None and after is not None:
            booked.interval(before, after, -1)
        chain = ([before] if before is not None else []) + list(new) + (
            [after] if after is not None else [])
        for start, end in zip(chain, chain[1:]):
            booked.interval(start, end, 1)
    flat = [p for new in points.values() for p in new]
    txn.add_counter_points(batch.gateway, flat)
    txn.adjust_rollups(batch.gateway, booked.deltas())
    return len(flat)


def rebuild(points: Iterable[CounterPoint], tz: ZoneInfo) -> list[RollupDelta]:
    """Rollups from scratch for one gateway's points (any order): the oracle for the
    incremental path, and how rollups of data stored before migration 4 are built."""
    by_series: dict[Series, list[CounterPoint]] = defaultdict(list)
    for p in points:
        by_series[(p.meter, p.measurement)].append(p)
    deltas: list[RollupDelta] = []
    for series in by_series.values():
        series.sort(key=lambda p: (p.epoch, p.seq))
        for start, end in zip(series, series[1:]):
            deltas += interval_deltas(start, end, tz)
    return merge(deltas)


STALE_COUNTER = "rollups_stale"  # set by a migration that adds points without rollups


def rebuild_all(store: Store, tz: ZoneInfo) -> int:
    """Rebuild every gateway's rollups from its counter points, one transaction per gateway;
    clear the stale mark; return how many gateways. Holds one gateway's points in memory."""
    per_gateway: dict[str, list[CounterPoint]] = defaultdict(list)
    for name in sorted(ROLLED_UP):
        for s in store.counter_samples(name):
            per_gateway[s.gateway].append(CounterPoint(s.meter, name, s.epoch, s.seq, s.ts_ms,
                                                       s.value))
    for gateway, points in per_gateway.items():
        with store.transaction(lock=gateway) as txn:
            txn.clear_rollups(gateway)
            txn.adjust_rollups(gateway, rebuild(points, tz))
    stale = store.counters().get(STALE_COUNTER, 0)
    if stale:
        store.bump_counter(STALE_COUNTER, -stale)
    return len(per_gateway)
