"""``nengtan receiver feed …``: build a period's regulator-feed message and deliver it."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from cloud_receiver.accounting.feed import FeedMessage, build_day, build_month
from cloud_receiver.accounting.feed_send import (
    AUDIT_FILE,
    AuditLog,
    FeedError,
    HttpsJsonAdapter,
    deliver,
    load_feed_config,
)
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.config import load_config
from cloud_receiver.store import open_store
from nengtan.clikit import CONTEXT_SETTINGS, handle_errors
from nengtan.errors import ConfigError

_CONFIG = click.option("--config", "config_path", required=True,
                       type=click.Path(dir_okay=False, path_type=Path),
                       help="The receiver's TOML config (see receiver.sample.toml).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group(name="feed", context_settings=CONTEXT_SETTINGS)
def feed() -> None:
    """Upload to the key-energy-user online monitoring platform (重点用能单位能耗在线监测).

    The platform, URL and enterprise code are set in feed.toml in the plant directory.
    Every attempt is appended to feed-audit.jsonl beside the receiver's database.

    \b
    Example:
      nengtan receiver feed send --config receiver.toml --plant plant/ --day 2025-06-01
      nengtan receiver feed audit --config receiver.toml --json
    """


def audit_path(config_path: Path) -> Path:
    return load_config(config_path).files_dir / AUDIT_FILE


def _summary(message: FeedMessage) -> dict[str, Any]:
    body = message.body
    points = [{k: p[k] for k in ("point", "total", "unit", "kgce", "completeness_pct",
                                 "meets_90pct")} | ({"consistency": p["consistency"]}
                                                    if "consistency" in p else {})
              for p in body["points"]]
    return {"message_id": message.message_id, "kind": message.kind, "period": message.period,
            "digest": message.digest, "total_kgce": body["total_kgce"],
            "quality": body["quality"], "points": points}


@feed.command(name="send")
@_CONFIG
@_JSON
@click.option("--plant", "plant_dir", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The plant data directory (plant.toml, feed.toml, ...).")
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Send this local day: 15-minute data and the daily statistic.")
@click.option("--month", type=click.DateTime(formats=["%Y-%m"]), default=None,
              help="Send this month's statistic with the daily-vs-monthly check.")
@click.option("--dry-run", is_flag=True, help="Build and show the message; send nothing.")
@click.option("--resend", is_flag=True,
              help="Send even if the platform accepted identical content before.")
@handle_errors
def send_command(config_path: Path, as_json: bool, plant_dir: Path, day: datetime | None,
                 month: datetime | None, dry_run: bool, resend: bool) -> None:
    """Build one period's message from the stored counters and deliver it.

    Completeness (≥ 90 %) and, for a month, daily-vs-monthly consistency (≤ 5 %) are
    computed and printed; they do not stop the upload (the platform judges them). Exits with
    status 1 if the platform did not accept the message.

    \b
    Example:
        nengtan receiver feed send --config receiver.toml --plant plant/ --day 2025-06-01
        nengtan receiver feed send --config receiver.toml --plant plant/ --month 2025-06 --dry-run
    """
    if (day is None) == (month is None):
        raise click.UsageError("give exactly one of --day or --month")
    config = load_config(config_path)
    plant = load_plant(plant_dir)
    fc = load_feed_config(plant_dir)
    store = open_store(config.storage, create=False)
    try:
        now = int(time.time() * 1000)
        if day is not None:
            message = build_day(store, plant, fc.enterprise_code, day.date(),
                                point_ids=list(fc.points) or None,
                                interval_minutes=fc.interval_minutes, now_ms=now)
        else:
            assert month is not None
            message = build_month(store, plant, fc.enterprise_code, month.year, month.month,
                                  point_ids=list(fc.points) or None, now_ms=now)
    finally:
        store.close()
    summary = _summary(message)
    if dry_run:
        out = {"dry_run": True, **summary, "body": message.body}
        click.echo(json.dumps(out, ensure_ascii=False, indent=2) if as_json
                   else _render(summary, "dry run: nothing sent"))
        return
    token = None
    if fc.token_env:
        token = os.environ.get(fc.token_env)
        if not token:
            raise ConfigError(str(plant_dir / "feed.toml"),
                              [f"At 'feed.token_env': the environment variable {fc.token_env} "
                               "is not set"])
    adapter = HttpsJsonAdapter(fc.url, token=token, timeout_s=fc.timeout_s, ca_file=fc.ca_file)
    try:
        result = deliver(adapter, message, AuditLog(config.files_dir / AUDIT_FILE),
                         retries=fc.retries, backoff_s=fc.backoff_s,
                         backoff_max_s=fc.backoff_max_s, resend=resend)
    finally:
        adapter.close()
    click.echo(json.dumps({**summary, "delivery": result.as_dict()}, ensure_ascii=False, indent=2)
               if as_json else _render(summary, f"{result.outcome} after {result.attempts} "
                                                f"attempt(s): {result.status} {result.detail[:120]}"))
    if result.outcome not in ("accepted", "already_accepted"):
        raise FeedError(f"{message.kind} {message.period} was not accepted: {result.outcome}")


def _render(summary: dict[str, Any], outcome: str) -> str:
    q = summary["quality"]
    lines = [f"{summary['kind']} {summary['period']}  message {summary['message_id']}",
             f"  completeness {q['completeness_pct']} % ({q['received']}/{q['expected']}) "
             f"{'≥' if q['meets_90pct'] else '<'} 90 %   total {summary['total_kgce']} kgce"]
    for p in summary["points"]:
        line = (f"  {p['point']:<20} {p['total']} {p['unit']}  {p['kgce']} kgce  "
                f"{p['completeness_pct']} %")
        if "consistency" in p:
            c = p["consistency"]
            line += (f"  daily Σ {c['daily_sum']} vs monthly {c['monthly']}: "
                     f"{c['deviation_pct']} % {'ok' if c['within_5pct'] else '> 5 %'}")
        lines.append(line)
    return "\n".join([*lines, f"  {outcome}"])


@feed.command(name="audit")
@_CONFIG
@_JSON
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="Show the last this many attempts.")
@handle_errors
def audit_command(config_path: Path, as_json: bool, limit: int) -> None:
    """Show the feed audit log: every attempt, oldest first.

    \b
    Example:
        nengtan receiver feed audit --config receiver.toml --json | jq '.[].outcome'
    """
    entries = list(AuditLog(audit_path(config_path)).entries())[-limit:]
    if as_json:
        click.echo(json.dumps(entries, ensure_ascii=False, indent=2))
        return
    for e in entries:
        click.echo(f"{e.get('at', '?')} {e.get('kind', '?')} {e.get('period', '?')} "
                   f"#{e.get('attempt', '?')} {e.get('outcome')} {e.get('status')} "
                   f"{str(e.get('detail', ''))[:80]}")
