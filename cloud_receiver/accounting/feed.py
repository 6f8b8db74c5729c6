"""What the plant reports to the key-energy-user online monitoring platform (重点用能单位能耗在线
监测系统): 15-minute real-time indicators and daily / monthly statistics, with the platform's two
data-quality checks computed and stated rather than assumed.

The platform counts uploaded values against expected ones (≥ 90 % complete) and compares the
daily data with the monthly data (≤ 5 % apart); days start at local midnight, months on the 1st
(standards.md §3.3). A bucket without data is sent as ``null`` with its quality, never as 0 and
never interpolated. The daily values come from the 15-minute rollups and the monthly value from
the daily rollups, two tables the ingest maintains separately, so the 5 % check compares two
independent sums instead of one number with itself. The enterprise-side wire format is not
public, so this module only builds a documented JSON message; ``feed_send`` delivers it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cloud_receiver.accounting.energy import IntervalEnergy, PointEnergy, interval_energy
from cloud_receiver.accounting.factors import Choice, kgce_factor
from cloud_receiver.accounting.model import MeterPoint, Plant
from cloud_receiver.store import Store
from nengtan.errors import ConfigError

SCHEMA = "nengtan.feed/1"
COMPLETENESS_MIN_PCT = 90.0  # uploaded ÷ expected (standards.md §3.3)
CONSISTENCY_MAX_PCT = 5.0  # |Σ daily − monthly| ÷ monthly
INTERVAL_PERIODS = {15: "15m", 60: "1h"}  # real-time interval lengths the rollups can give


@dataclass(frozen=True)
class FeedMessage:
    """One period's upload. ``message_id`` depends only on (enterprise, kind, period), so a
    resend of the same period carries the same id and the platform can deduplicate it;
    ``digest`` is the SHA-256 of the canonical body, to tell a correction from a repeat."""

    message_id: str
    kind: str  # "day" | "month"
    period: str  # "2025-06-01" | "2025-06"
    body: dict[str, Any]

    @property
    def payload(self) -> bytes:
        return canonical(self.body)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


def canonical(body: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same content always gives the same bytes."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def message_id(enterprise: str, kind: str, period: str) -> str:
    return hashlib.sha256(f"{enterprise}|{kind}|{period}".encode()).hexdigest()[:32]


def _iso(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).isoformat()


def _num(value: float) -> float:
    # Six decimals hide binary noise (0.30000000000000004) without touching meter resolution.
    return round(value, 6) + 0.0


def _local_ms(day: date, tz: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


def feed_points(plant: Plant, ids: list[str] | None) -> list[MeterPoint]:
    """The points named in feed.toml, else the level-1 (boundary) points the platform asks for."""
    if ids:
        unknown = [i for i in ids if i not in plant.points]
        if unknown:
            raise ConfigError("feed.toml", [f"At 'feed.points': no metering point {i!r}"
                                            for i in unknown])
        return [plant.points[i] for i in ids]
    chosen = [p for p in plant.points.values() if p.level == 1]
    if not chosen:
        raise ConfigError(str(plant.directory / "plant.toml"),
                          ["no level-1 metering point to report; list points in feed.toml"])
    return chosen


def _choice(plant: Plant, year: int) -> Choice:
    acc = plant.accounting
    if acc is None:
        return Choice("statistical", "henan", year)
    return Choice(acc.regime, acc.region, acc.year, acc.electricity_basis)


def _kgce(point: MeterPoint, amount: float, on: date, plant: Plant) -> dict[str, Any]:
    factor = kgce_factor(point.energy_type, on, _choice(plant, on.year))
    if isinstance(factor, str):
        raise ConfigError("factors", [f"At '{point.energy_type}': {factor}"])
    return {"kgce": _num(amount * factor.value), "kgce_factor": {
        "key": factor.key, "value": factor.value, "unit": factor.unit,
        "table_version": factor.table_version}}


def _quality(pe: PointEnergy) -> dict[str, Any]:
    pct = pe.completeness
    return {"expected": pe.expected, "received": pe.covered, "completeness_pct": _num(pct),
            "meets_90pct": pct >= COMPLETENESS_MIN_PCT}


def _gaps(pe: PointEnergy, tz: ZoneInfo) -> list[dict[str, Any]]:
    return [{"start": _iso(g.start_ms, tz), "end": _iso(g.end_ms, tz), "buckets": g.buckets,
             "empty": g.empty, "long_interval": g.long} for g in pe.gaps]


def _intervals(pe: PointEnergy, energy: IntervalEnergy, step_ms: int,
               tz: ZoneInfo) -> list[dict[str, Any]]:
    """Every bucket of the day, in order. ``ok``: fully covered; ``partial``: energy is booked
    here but the bucket is a gap (an interval that began before it, or a replacement bridge);
    ``missing``: no data (``null``, never 0); ``pending``: not due yet."""
    gap_buckets = {s for g in pe.gaps for s in range(g.start_ms, g.end_ms, step_ms)}
    out = []
    for start in range(energy.start_ms, energy.end_ms, step_ms):
        value = pe.amounts.get(start)
        if start in gap_buckets:
            quality = "missing" if value is None else "partial"
        else:
            quality = "pending" if value is None else "ok"
        out.append({"start": _iso(start, tz), "value": None if value is None else _num(value),
                    "quality": quality})
    return out


def _overall(points: list[dict[str, Any]]) -> dict[str, Any]:
    expected = sum(p["expected"] for p in points)
    received = sum(p["received"] for p in points)
    pct = 100.0 if expected == 0 else 100.0 * received / expected
    return {"expected": expected, "received": received, "completeness_pct": _num(pct),
            "meets_90pct": pct >= COMPLETENESS_MIN_PCT}


def build_day(store: Store, plant: Plant, enterprise: str, day: date, *,
              point_ids: list[str] | None = None, interval_minutes: int = 15,
              now_ms: int | None = None) -> FeedMessage:
    """The real-time indicators and the daily statistic of one local day."""
    if interval_minutes not in INTERVAL_PERIODS:
        raise ConfigError("feed.toml", [f"At 'feed.interval_minutes': {interval_minutes} is not "
                                        f"one of {', '.join(map(str, INTERVAL_PERIODS))}"])
    tz = ZoneInfo(plant.timezone)
    start, end = _local_ms(day, tz), _local_ms(day + timedelta(days=1), tz)
    period = INTERVAL_PERIODS[interval_minutes]
    energy = interval_energy(store, plant, start, end, period, until_ms=now_ms)
    rows = []
    for point in feed_points(plant, point_ids):
        pe = energy.points[point.id]
        rows.append({"point": point.id, "name": point.name, "energy_type": point.energy_type,
                     "unit": point.unit, "level": point.level, "total": _num(pe.total),
                     **_kgce(point, pe.total, day, plant), **_quality(pe),
                     "gaps": _gaps(pe, tz),
                     "intervals": _intervals(pe, energy, interval_minutes * 60_000, tz)})
    mid = message_id(enterprise, "day", day.isoformat())
    body: dict[str, Any] = {"schema": SCHEMA, "message_id": mid,
            "enterprise_code": enterprise, "kind": "day", "period": day.isoformat(),
            "period_start": _iso(start, tz), "period_end": _iso(end, tz),
            "interval_minutes": interval_minutes, "points": rows,
            "total_kgce": _num(math.fsum(r["kgce"] for r in rows)), "quality": _overall(rows)}
    return FeedMessage(mid, "day", day.isoformat(), body)


def consistency(daily_sum: float, monthly: float) -> dict[str, Any]:
    """|Σ daily − monthly| ÷ monthly × 100 against the 5 % limit."""
    if monthly == 0:
        deviation = 0.0 if daily_sum == 0 else None
    else:
        deviation = abs(daily_sum - monthly) / abs(monthly) * 100
    return {"daily_sum": _num(daily_sum), "monthly": _num(monthly),
            "deviation_pct": None if deviation is None else _num(deviation),
            "within_5pct": deviation is not None and deviation <= CONSISTENCY_MAX_PCT}


def build_month(store: Store, plant: Plant, enterprise: str, year: int, month: int, *,
                point_ids: list[str] | None = None,
                now_ms: int | None = None) -> FeedMessage:
    """The monthly statistic, the month's daily values and the daily-vs-monthly check."""
    tz = ZoneInfo(plant.timezone)
    first = date(year, month, 1)
    after = date(year + (month == 12), month % 12 + 1, 1)
    start, end = _local_ms(first, tz), _local_ms(after, tz)
    quarter = interval_energy(store, plant, start, end, "15m", until_ms=now_ms)
    daily = interval_energy(store, plant, start, end, "1d", until_ms=now_ms)
    days = [first + timedelta(days=i) for i in range((after - first).days)]
    rows = []
    for point in feed_points(plant, point_ids):
        pq, pd = quarter.points[point.id], daily.points[point.id]
        per_day = []
        for d in days:
            lo, hi = _local_ms(d, tz), _local_ms(d + timedelta(days=1), tz)
            per_day.append({"day": d.isoformat(), "value": _num(math.fsum(
                v for s, v in pq.amounts.items() if lo <= s < hi))})
        monthly = pd.total
        rows.append({"point": point.id, "name": point.name, "energy_type": point.energy_type,
                     "unit": point.unit, "level": point.level, "total": _num(monthly),
                     **_kgce(point, monthly, first, plant), **_quality(pq),
                     "gaps": _gaps(pq, tz), "days": per_day,
                     "consistency": consistency(math.fsum(pq.amounts.values()), monthly)})
    period = f"{year:04d}-{month:02d}"
    mid = message_id(enterprise, "month", period)
    body: dict[str, Any] = {"schema": SCHEMA, "message_id": mid,
            "enterprise_code": enterprise, "kind": "month", "period": period,
            "period_start": _iso(start, tz), "period_end": _iso(end, tz), "points": rows,
            "total_kgce": _num(math.fsum(r["kgce"] for r in rows)), "quality": _overall(rows),
            "consistent": all(r["consistency"]["within_5pct"] for r in rows)}
    return FeedMessage(mid, "month", period, body)
