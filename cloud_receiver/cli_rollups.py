"""``nengtan receiver rollups``: the 15-minute, hourly and daily counter rollups, as stored.

The rollups are what reports and the regulator feed read; this command shows them raw (amount,
intervals, anomalies, long intervals per bucket) so an operator can check a figure at its source,
and rebuilds them from the counter points when asked (after a restore, or to prove they agree).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from cloud_receiver.config import load_config
from cloud_receiver.rollups import rebuild_all
from cloud_receiver.store import ROLLUP_PERIODS, open_store
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors

_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]


def _local_ms(value: datetime | None, tz: ZoneInfo) -> int | None:
    return None if value is None else int(value.replace(tzinfo=tz).timestamp() * 1000)


@click.command(name="rollups", context_settings=CONTEXT_SETTINGS)
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The receiver's TOML config (see receiver.sample.toml).")
@click.option("--period", type=click.Choice(list(ROLLUP_PERIODS)), default="1h",
              show_default=True, help="Bucket length.")
@click.option("--gateway", default=None, help="Only this gateway id.")
@click.option("--meter", default=None, help="Only this meter id.")
@click.option("--measurement", default="active_energy_import", show_default=True,
              help="The counter measurement.")
@click.option("--from", "start", type=click.DateTime(_FORMATS), default=None,
              help="First bucket start, local time of [carbon] timezone.")
@click.option("--to", "end", type=click.DateTime(_FORMATS), default=None,
              help="Buckets starting before this local time.")
@click.option("--rebuild", is_flag=True,
              help="First rebuild every gateway's rollups from the stored counter points.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@handle_errors
def rollups(config_path: Path, period: str, gateway: str | None, meter: str | None,
            measurement: str, start: datetime | None, end: datetime | None, rebuild: bool,
            as_json: bool) -> None:
    """Show the counter rollups per bucket (and optionally rebuild them first).

    Amounts are counter units (kWh for energy). An interval between two readings is booked to
    the bucket of its end reading; intervals longer than the bucket are counted as long, and a
    counter that went backwards counts 0 and as an anomaly.

    \b
    Example:
        nengtan receiver rollups --config receiver.toml --period 1d --from 2025-06-01
        nengtan receiver rollups --config receiver.toml --rebuild --json
    """
    config = load_config(config_path)
    tz = ZoneInfo(config.carbon.timezone)
    store = open_store(config.storage, create=False)
    try:
        rebuilt = rebuild_all(store, tz) if rebuild else None
        rows = store.rollups(period, gateway=gateway, meter=meter, measurement=measurement,
                             start_ms=_local_ms(start, tz), end_ms=_local_ms(end, tz))
    finally:
        store.close()
    if as_json:
        emit_json({"period": period, "timezone": config.carbon.timezone,
                   "rebuilt_gateways": rebuilt, "rollups": [asdict(r) for r in rows]})
        return
    if rebuilt is not None:
        click.echo(f"rebuilt the rollups of {rebuilt} gateway(s) from their counter points")
    click.echo(f"{'gateway':<16} {'meter':<16} {'start (' + config.carbon.timezone + ')':<26}"
               f" {'amount':>14} {'intervals':>9} {'anomalies':>9} {'long':>5}")
    for r in rows:
        when = datetime.fromtimestamp(r.start_ms / 1000, tz).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{r.gateway:<16} {r.meter:<16} {when:<26} {r.amount:>14.6f}"
                   f" {r.intervals:>9} {r.anomalies:>9} {r.long_intervals:>5}")
    click.echo(f"{len(rows)} bucket(s)")
