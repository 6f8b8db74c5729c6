"""``nengtan receiver alerts …``: check the plant's alert rules, list alerts, acknowledge one.

Thin over ``cloud_receiver.accounting.alerts`` and the store. ``check`` evaluates the rules now
(the receiver also runs them itself with ``[alerts]``); ``list`` and ``ack`` are for people
(``--json`` for scripts).
"""

from __future__ import annotations

import getpass
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from cloud_receiver.accounting.alerts import KINDS, alert_dict, evaluate, load_rules
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.config import load_config
from cloud_receiver.store import AccountingAlert, open_store
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors

_CONFIG = click.option("--config", "config_path", required=True,
                       type=click.Path(dir_okay=False, path_type=Path),
                       help="The receiver's TOML config (see receiver.sample.toml).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(
        timespec="seconds")


def _line(a: AccountingAlert) -> str:
    ack = f", acknowledged by {a.acked_by} at {_when(a.acked_ms)}" if a.acked_by else ""
    closed = f", closed {_when(a.closed_ms)}" if a.closed_ms else ""
    return (f"#{a.id} {a.state:<12} {a.kind:<16} {a.subject} (rule {a.rule}; first"
            f" {_when(a.first_seen_ms)}, last {_when(a.last_seen_ms)}, seen {a.occurrences}x"
            f"{ack}{closed})\n    {a.detail}")


@click.group(name="alerts", context_settings=CONTEXT_SETTINGS)
def alerts() -> None:
    """Accounting alerts (thresholds, missing data, offline gateways, balance, counter
    anomalies): evaluate the rules of a plant directory, list, acknowledge.

    \b
    Example:
        nengtan receiver alerts check --config receiver.toml --plant /etc/nengtan-receiver/plant
        nengtan receiver alerts list --config receiver.toml
        nengtan receiver alerts ack --config receiver.toml 12 --by "Wang Li"
    """


@alerts.command(name="check")
@_CONFIG
@_JSON
@click.option("--plant", "plant_dir", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The plant data directory (plant.toml, alerts.toml, ...).")
@handle_errors
def check_command(config_path: Path, as_json: bool, plant_dir: Path) -> None:
    """Evaluate the rules in the plant's alerts.toml now: raise or refresh an alert per
    condition found, close those whose condition cleared. Safe to run often.

    \b
    Example:
        nengtan receiver alerts check --config receiver.toml --plant plant/ --json
    """
    config = load_config(config_path)
    plant = load_plant(plant_dir)
    rules = load_rules(plant)
    store = open_store(config.storage, create=False)
    try:
        result = evaluate(store, plant, rules, _now_ms())
    finally:
        store.close()
    if as_json:
        emit_json({"rules": len(rules), "raised": [alert_dict(a) for a in result.raised],
                   "closed": [alert_dict(a) for a in result.closed]})
        return
    click.echo(f"{len(rules)} rule(s): {len(result.raised)} alert(s) active, "
               f"{len(result.closed)} closed now")
    for a in result.raised:
        click.echo(_line(a))


@alerts.command(name="list")
@_CONFIG
@_JSON
@click.option("--state", type=click.Choice(["live", "open", "acknowledged", "closed", "all"]),
              default="live", show_default=True,
              help="live = open or acknowledged.")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="Only this kind.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="Show at most this many, newest first.")
@handle_errors
def list_command(config_path: Path, as_json: bool, state: str, kind: str | None,
                 limit: int) -> None:
    """List accounting alerts, newest first.

    \b
    Example:
        nengtan receiver alerts list --config receiver.toml --state all --kind balance
    """
    config = load_config(config_path)
    store = open_store(config.storage, create=False)
    try:
        found = store.accounting_alerts(state=None if state == "all" else state, kind=kind,
                                        limit=limit)
    finally:
        store.close()
    if as_json:
        emit_json({"alerts": [alert_dict(a) for a in found]})
        return
    for a in found:
        click.echo(_line(a))
    click.echo(f"{len(found)} alert(s)")


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME (a bare container)
        return "unknown user"


@alerts.command(name="ack")
@_CONFIG
@_JSON
@click.argument("alert_id", type=int)
@click.option("--by", default=None, help="Who takes it (default: the login name).")
@handle_errors
def ack_command(config_path: Path, as_json: bool, alert_id: int, by: str | None) -> None:
    """Acknowledge an open alert: someone has taken it. It stays live until its condition
    clears; acknowledging it again keeps the first acknowledgement.

    \b
    Example:
        nengtan receiver alerts ack --config receiver.toml 12 --by "Wang Li"
    """
    config = load_config(config_path)
    store = open_store(config.storage, create=False)
    try:
        alert = store.ack_accounting_alert(alert_id, by or _operator(), _now_ms())
    finally:
        store.close()
    if as_json:
        emit_json(alert_dict(alert))
    else:
        click.echo(_line(alert))
