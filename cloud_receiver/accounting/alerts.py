"""Accounting alerts: rules as data (``alerts.toml`` in the plant directory), state in the store.

The Henan centres must warn (预警) on abnormal consumption, missing data and offline devices. The
rules are operator data, reviewed like the plant model; what they find is machine state, kept in
the receiver store with its lifecycle (open → acknowledged → closed) so a person can take an
alert and the record of who did survives. ``evaluate`` is idempotent: the receiver runs it every
``[alerts] interval_s`` (``cloud_receiver/alert_runner.py``), and a condition that persists
updates its one live alert instead of adding another; a condition that cleared closes it.

Rule kinds (every rule has a unique ``name``; ``points`` defaults to every metering point):

* ``threshold``: per ``period`` bucket (15m/1h/1d) in the last ``lookback_minutes``, the amount
  above ``max_amount`` / below ``min_amount`` (energy-type units), or the mean power above
  ``max_kw`` (electricity only: kWh ÷ bucket hours);
* ``missing_data``: no counter interval of a point within the last ``after_minutes`` (15-minute
  resolution: the rollups are what is queried);
* ``gateway_offline``: the newest envelope from a gateway (``gateways``, default those of the
  plant's points) was received more than ``after_minutes`` ago, or never;
* ``balance``: a parent meter vs its sub-meters over the last ``lookback_minutes`` beyond
  ``max_loss_pct`` (complete data only, see ``balance``);
* ``counter_anomaly``: a counter that went backwards without a replacement or rollover to
  explain it (or a replacement record that disagrees with the readings) in the lookback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from cloud_receiver.accounting._files import read_toml
from cloud_receiver.accounting.balance import PointAmount, balance
from cloud_receiver.accounting.energy import IntervalEnergy, interval_energy
from cloud_receiver.accounting.model import Plant
from cloud_receiver.rollups import bucket_start
from cloud_receiver.store import ROLLUP_PERIODS, AccountingAlert, Store
from nengtan.errors import ConfigError

ALERTS_FILE = "alerts.toml"
KINDS = ("threshold", "missing_data", "gateway_offline", "balance", "counter_anomaly")
_KEYS: dict[str, set[str]] = {
    "threshold": {"period", "lookback_minutes", "max_amount", "min_amount", "max_kw", "points"},
    "missing_data": {"after_minutes", "points"},
    "gateway_offline": {"after_minutes", "gateways"},
    "balance": {"lookback_minutes", "max_loss_pct", "period"},
    "counter_anomaly": {"lookback_minutes", "points"},
}
MINUTE = 60_000


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    points: tuple[str, ...] = ()  # empty: every point
    gateways: tuple[str, ...] = ()
    period: str = "15m"
    lookback_minutes: int = 60
    after_minutes: int = 30
    max_amount: float | None = None
    min_amount: float | None = None
    max_kw: float | None = None
    max_loss_pct: float = 5.0


def parse_rules(doc: Mapping[str, object], source: str, plant: Plant) -> list[Rule]:
    """Rules of a parsed ``alerts.toml``; every problem reported at once."""
    raw = doc.get("rule", [])
    if not isinstance(raw, list):
        raise ConfigError(source, ["At 'rule': expected an array of tables ([[rule]])"])
    problems: list[str] = []
    rules: list[Rule] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        where = f"At 'rule[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}': expected a table")
            continue
        name, kind = item.get("name"), item.get("kind")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.name': expected a non-empty string")
        elif name in names:
            problems.append(f"{where}.name': {name!r} is used by an earlier rule")
        else:
            names.add(name)
        if kind not in KINDS:
            problems.append(f"{where}.kind': {kind!r} is not one of {', '.join(KINDS)}")
            continue
        bad = len(problems)
        unknown = sorted(set(item) - _KEYS[kind] - {"name", "kind"})
        if unknown:
            problems.append(f"{where}': unknown key(s) for a {kind} rule: {', '.join(unknown)}")
        values: dict[str, object] = {}
        for key in ("lookback_minutes", "after_minutes"):
            if key in item:
                v = item[key]
                if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                    problems.append(f"{where}.{key}': expected a whole number of minutes > 0")
                values[key] = v
        for key in ("max_amount", "min_amount", "max_kw", "max_loss_pct"):
            if key in item:
                v = item[key]
                if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                    problems.append(f"{where}.{key}': expected a number >= 0")
                else:
                    values[key] = float(v)
        if "period" in item:
            if item["period"] not in ROLLUP_PERIODS:
                problems.append(f"{where}.period': expected one of {', '.join(ROLLUP_PERIODS)}")
            values["period"] = item["period"]
        for key, known in (("points", plant.points), ("gateways", None)):
            if key not in item:
                continue
            v = item[key]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                problems.append(f"{where}.{key}': expected a list of ids")
                continue
            for x in v:
                if known is not None and x not in known:
                    problems.append(f"{where}.{key}': {x!r} is not a metering point of the plant")
            values[key] = tuple(v)
        if kind == "threshold":
            if not {"max_amount", "min_amount", "max_kw"} & set(values):
                problems.append(f"{where}': a threshold rule needs max_amount, min_amount or max_kw")
            chosen = values.get("points") or tuple(plant.points)
            assert isinstance(chosen, tuple)
            not_kwh = [p for p in chosen if p in plant.points and plant.points[p].unit != "kWh"]
            if "max_kw" in values and not_kwh:
                problems.append(f"{where}.max_kw': only for electricity points, not "
                                + ", ".join(not_kwh))
        if len(problems) == bad and isinstance(name, str):
            rules.append(Rule(name, kind, **values))  # type: ignore[arg-type]
    if problems:
        raise ConfigError(source, problems)
    return rules


def load_rules(plant: Plant) -> list[Rule]:
    """``alerts.toml`` of the plant directory (absent: no rules)."""
    path = Path(plant.directory) / ALERTS_FILE
    doc = read_toml(path)
    return [] if doc is None else parse_rules(doc, str(path), plant)


@dataclass
class Evaluation:
    raised: list[AccountingAlert] = field(default_factory=list)
    closed: list[AccountingAlert] = field(default_factory=list)


def _local(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M")


def _window(rule: Rule, now_ms: int, tz: ZoneInfo) -> tuple[int, int]:
    """Whole ``rule.period`` buckets ending at or before now, covering the lookback."""
    end = bucket_start(rule.period, now_ms, tz)
    return bucket_start(rule.period, now_ms - rule.lookback_minutes * MINUTE, tz), end


def _energy(store: Store, plant: Plant, rule: Rule, now_ms: int,
            tz: ZoneInfo) -> IntervalEnergy | None:
    start, end = _window(rule, now_ms, tz)
    return None if end <= start else interval_energy(store, plant, start, end, rule.period,
                                                     until_ms=now_ms)


def _threshold(store: Store, plant: Plant, rule: Rule, now_ms: int, tz: ZoneInfo) -> dict[str, str]:
    found: dict[str, str] = {}
    energy = _energy(store, plant, rule, now_ms, tz)
    if energy is None:
        return found
    hours = ROLLUP_PERIODS[rule.period] / 3_600_000
    for pid in rule.points or tuple(plant.points):
        pe = energy.points[pid]
        over = []
        for start, amount in sorted(pe.amounts.items()):
            checks = [(rule.max_amount, amount, ">", pe.point.unit),
                      (rule.max_kw, amount / hours, ">", "kW")]
            for limit, value, _, unit in checks:
                if limit is not None and value > limit:
                    over.append(f"{_local(start, tz)} {value:g} {unit} > {limit:g} {unit}")
            if rule.min_amount is not None and amount < rule.min_amount:
                over.append(f"{_local(start, tz)} {amount:g} {pe.point.unit} <"
                            f" {rule.min_amount:g} {pe.point.unit}")
        if over:
            found[pid] = (f"{len(over)} {rule.period} bucket(s) out of range in the last "
                          f"{rule.lookback_minutes} min: " + "; ".join(over[:5])
                          + (" …" if len(over) > 5 else ""))
    return found


def _missing(store: Store, plant: Plant, rule: Rule, now_ms: int, tz: ZoneInfo) -> dict[str, str]:
    since = now_ms - rule.after_minutes * MINUTE
    found = {}
    for pid in rule.points or tuple(plant.points):
        p = plant.points[pid]
        meters = [p.meter] + [r.new_meter for r in plant.replacements_of(pid) if r.new_meter]
        recent = [r for m in meters for r in store.rollups(
            "15m", gateway=p.gateway, meter=m, measurement=p.measurement,
            start_ms=bucket_start("15m", since, tz)) if r.intervals > 0]
        if not recent:
            found[pid] = (f"no counter reading of {p.gateway}/{p.meter}/{p.measurement} since"
                          f" {_local(since, tz)} ({rule.after_minutes} min)")
    return found


def _offline(store: Store, plant: Plant, rule: Rule, now_ms: int, tz: ZoneInfo) -> dict[str, str]:
    seen = store.gateway_last_seen()
    gateways = rule.gateways or tuple(sorted({p.gateway for p in plant.points.values()}))
    found = {}
    for gw in gateways:
        last = seen.get(gw)
        if last is None:
            found[gw] = "no envelope ever received from this gateway"
        elif now_ms - last > rule.after_minutes * MINUTE:
            found[gw] = (f"last envelope received {_local(last, tz)}, "
                         f"{(now_ms - last) // MINUTE} min ago (limit {rule.after_minutes} min)")
    return found


def _balance(store: Store, plant: Plant, rule: Rule, now_ms: int, tz: ZoneInfo) -> dict[str, str]:
    energy = _energy(store, plant, rule, now_ms, tz)
    if energy is None:
        return {}
    amounts = {pid: PointAmount(pe.total, pe.completeness) for pid, pe in energy.points.items()}
    start, end = _window(rule, now_ms, tz)
    return {row.parent: f"{_local(start, tz)} – {_local(end, tz)}: parent {row.parent_amount:g}"
                        f" {row.unit}, sub-meters {row.children_amount:g} {row.unit}; {row.detail}"
            for row in balance(plant, amounts, threshold_pct=rule.max_loss_pct)
            if row.status == "deviation"}


def _anomaly(store: Store, plant: Plant, rule: Rule, now_ms: int, tz: ZoneInfo) -> dict[str, str]:
    energy = _energy(store, plant, rule, now_ms, tz)
    if energy is None:
        return {}
    found = {}
    for pid in rule.points or tuple(plant.points):
        bad = [e for e in energy.points[pid].events
               if e.kind in ("negative", "replacement_mismatch")]
        if bad:
            first = bad[0]
            found[pid] = (f"{len(bad)} unexplained counter jump(s) in the last "
                          f"{rule.lookback_minutes} min; first at {_local(first.ts_ms, tz)}:"
                          f" {first.previous:g} → {first.current:g} ({first.detail})")
    return found


_CHECKS = {"threshold": _threshold, "missing_data": _missing, "gateway_offline": _offline,
           "balance": _balance, "counter_anomaly": _anomaly}


def evaluate(store: Store, plant: Plant, rules: Sequence[Rule], now_ms: int) -> Evaluation:
    """Check every rule at ``now_ms``: raise (or refresh) an alert per condition found, close
    the live alerts of each rule whose condition is gone."""
    tz = ZoneInfo(plant.timezone)
    result = Evaluation()
    live = store.accounting_alerts(state="live", limit=1_000_000)
    for rule in rules:
        found = _CHECKS[rule.kind](store, plant, rule, now_ms, tz)
        for subject, detail in sorted(found.items()):
            result.raised.append(store.raise_accounting_alert(rule.kind, subject, rule.name,
                                                              now_ms, detail))
        for alert in live:
            if (alert.rule == rule.name and alert.kind == rule.kind
                    and alert.subject not in found
                    and store.close_accounting_alert(alert.id, now_ms)):
                result.closed.append(alert)
    return result


def alert_dict(a: AccountingAlert) -> dict[str, object]:
    return {"id": a.id, "kind": a.kind, "subject": a.subject, "rule": a.rule,
            "state": a.state, "first_seen_ms": a.first_seen_ms, "last_seen_ms": a.last_seen_ms,
            "occurrences": a.occurrences, "detail": a.detail, "acked_by": a.acked_by,
            "acked_ms": a.acked_ms, "closed_ms": a.closed_ms}
