"""``nengtan receiver …``: a thin click shell over the library functions."""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, UTC
from pathlib import Path
from typing import Any, TypeVar

import click

from cloud_receiver.config import ReceiverConfig, load_config
from cloud_receiver.gaps import build_gap_report, render_gaps
from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.report import build_report, render_text
from cloud_receiver.service import install_signal_handlers, run
from cloud_receiver.store import open_store
from nengtan.checkpoint import CHECKPOINT_MEDIA_TYPE, decode_checkpoint
from nengtan.clikit import CONTEXT_SETTINGS, EXIT_ERROR, LazyGroup, handle_errors
from nengtan.envelope import decode_batch
from nengtan.errors import EnvelopeError, IdentityError
from nengtan.jws import parse_compact

F = TypeVar("F", bound=Callable[..., Any])

_CONFIG = click.option("--config", "config_path", required=True,
                       type=click.Path(dir_okay=False, path_type=Path),
                       help="The receiver's TOML config (see receiver.sample.toml).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


#: Sub-command groups in modules of their own, imported when one of them runs (``LazyGroup``):
#: ``receiver run`` does not load the accounting, feed or plant-editing code.
_LAZY = {
    "keys": "cloud_receiver.cli_keys:keys",
    "rollups": "cloud_receiver.cli_rollups:rollups",
    "feed": "cloud_receiver.accounting.feed_cli:feed",
    "alerts": "cloud_receiver.cli_alerts:alerts",
    "output": "cloud_receiver.cli_ops:output",
    "metering": "cloud_receiver.cli_ops:metering",
    "ledger": "cloud_receiver.accounting.ledger_cli:ledger",
    "scores": "cloud_receiver.accounting.scores_cli:scores",
    "plant": "cloud_receiver.accounting.plant_cli:plant",
}


@click.group(name="receiver", cls=LazyGroup, lazy=_LAZY, context_settings=CONTEXT_SETTINGS)
def receiver() -> None:
    """The cloud receiver: verify, store and report signed meter batches.

    \b
    Example:
        nengtan receiver run --config /etc/nengtan-receiver/receiver.toml
    """


@receiver.command(name="run")
@_CONFIG
@click.option("-v", "--verbose", is_flag=True, help="Log every message at DEBUG level.")
@handle_errors
def run_command(config_path: Path, verbose: bool) -> None:
    """Subscribe to the broker and ingest envelopes until SIGTERM or Ctrl-C.

    \b
    Example:
        nengtan receiver run --config /etc/nengtan-receiver/receiver.toml
    """
    config = load_config(config_path)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    install_signal_handlers(stop)
    run(config, stop)


@receiver.command(name="report")
@_CONFIG
@_JSON
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only this local day (YYYY-MM-DD, in the configured time zone).")
@click.option("--month", default=None, metavar="YYYY-MM",
              help="Monthly energy-carbon report of the plant (needs --plant).")
@click.option("--year", type=int, default=None, help="Annual report of the plant (needs --plant).")
@click.option("--plant", "plant_dir", type=click.Path(exists=True, file_okay=False,
                                                      path_type=Path), default=None,
              help="Plant data directory (plant.toml, replacements.toml; docs/accounting.md).")
@click.option("--format", "fmt", type=click.Choice(["text", "csv", "xlsx", "html", "json"]),
              default=None, help="Output format of --month/--year (default text; --json = json).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout (required for xlsx).")
@handle_errors
def report_command(config_path: Path, as_json: bool, day: datetime | None, month: str | None,
                   year: int | None, plant_dir: Path | None, fmt: str | None,
                   out: Path | None) -> None:
    """Energy (kWh), standard coal (kgce) and CO2 (kgCO2) per meter per local day, or the
    plant's monthly/annual energy-carbon report (--month/--year with --plant).

    The output names the factors used, the quarantine counts per reason and the counter
    anomalies (a counter going backwards counts as 0 kWh). The plant report adds per node and
    energy type the physical amount, kgce and kgCO2, completeness, gaps, counter events and the
    stored readings each total can be recomputed from.

    \b
    Example:
        nengtan receiver report --config receiver.toml --day 2025-06-01
        nengtan receiver report --config receiver.toml --json | jq '.rows[]'
        nengtan receiver report --config receiver.toml --plant plant/ --month 2025-06
        nengtan receiver report --config receiver.toml --plant plant/ --year 2025 \\
            --format xlsx --out 2025.xlsx
    """
    config = load_config(config_path)
    if month is not None or year is not None:
        _plant_report(config, plant_dir, month, year, fmt or ("json" if as_json else "text"), out)
        return
    store = open_store(config.storage, create=False)
    try:
        selected: date | None = day.date() if day else None
        result = build_report(store, config.carbon, day=selected)
    finally:
        store.close()
    click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2) if as_json
               else render_text(result))


def _plant_report(config: ReceiverConfig, plant_dir: Path | None, month: str | None,
                  year: int | None, fmt: str, out: Path | None) -> None:
    from cloud_receiver.accounting import report_cli

    if plant_dir is None or (month is not None and year is not None):
        raise click.UsageError("--month or --year (not both) needs --plant DIR")
    store = open_store(config.storage, create=False)
    try:
        result = report_cli.build(store, plant_dir, config.carbon, month=month, year=year)
    finally:
        store.close()
    text = report_cli.output(result, fmt, out)
    click.echo(text if text is not None else f"wrote {out}")


@receiver.command(name="enroll")
@_CONFIG
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@handle_errors
def enroll_command(config_path: Path, files: tuple[Path, ...]) -> None:
    """Import enrollment records (from `nengtan provision enroll`) into the registry.

    Each file is checked (the kid must match the key), copied into [registry] dir and
    stored in the database. Safe to re-run: a key already enrolled is left as it is.

    \b
    Example:
        nengtan receiver enroll --config receiver.toml gw-zhengzhou-01.enroll.json
    """
    config = load_config(config_path)
    store = open_store(config.storage)
    try:
        registry = Registry(store, config.registry_dir)
        for path in files:
            added = registry.enroll_file(path)
            click.echo(f"{path}: {'enrolled' if added else 'already enrolled'}")
    finally:
        store.close()


@receiver.command(name="quarantine")
@_CONFIG
@_JSON
@click.option("--reason", default=None, help="Only this reason, e.g. bad_signature.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1),
              help="Show at most this many, newest first.")
@handle_errors
def quarantine_command(config_path: Path, as_json: bool, reason: str | None, limit: int) -> None:
    """List quarantined messages, newest first, with the reason they were kept aside.

    \b
    Example:
        nengtan receiver quarantine --config receiver.toml --reason replay_conflict
        nengtan receiver quarantine --config receiver.toml --json
    """
    config = load_config(config_path)
    store = open_store(config.storage, create=False)
    try:
        items = store.quarantined(limit=limit, reason=reason)
        counts = store.quarantine_counts()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"counts": counts, "items": [
            {"id": q.id, "received_ms": q.received_ms, "topic": q.topic, "reason": q.reason,
             "detail": q.detail, "payload_b64": base64.b64encode(q.payload).decode("ascii")}
            for q in items]}, ensure_ascii=False, indent=2))
        return
    for q in items:
        when = datetime.fromtimestamp(q.received_ms / 1000, UTC).isoformat()
        click.echo(f"#{q.id} {when} {q.reason:<16} {q.topic} ({len(q.payload)} bytes)\n"
                   f"    {q.detail}")
    click.echo("Counts: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))


@receiver.command(name="gaps")
@_CONFIG
@_JSON
@click.option("--gateway", default=None, help="Only this gateway id.")
@handle_errors
def gaps_command(config_path: Path, as_json: bool, gateway: str | None) -> None:
    """List the cycle ranges the receiver is missing, per gateway and epoch.

    A range is "declared" when the gateway's signed gap records cover it (it dropped
    those cycles itself, e.g. at its disk cap) and "missing" otherwise: lost on the way,
    or not yet arrived. Ranges run up to the highest cycle stored or claimed by a signed
    checkpoint. Checkpoints that contradict stored envelopes are listed as security alerts.

    \b
    Example:
        nengtan receiver gaps --config receiver.toml --gateway gw-zz-01
        nengtan receiver gaps --config receiver.toml --json | jq '.streams[].ranges'
    """
    config = load_config(config_path)
    store = open_store(config.storage, create=False)
    try:
        result = build_gap_report(store, gateway)
    finally:
        store.close()
    click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2) if as_json
               else render_gaps(result))


def _import_topic(prefix: str, token: bytes) -> str:
    """The topic ``token`` would have come on. Ingest checks the topic against the signed gateway
    id, so it is taken from the payload (read here unverified; ingest verifies everything); a
    line that cannot even be read goes to ``<prefix>/-/batch`` and ingest quarantines it with
    its real reason."""
    try:
        compact = parse_compact(token)
        typ = str(compact.header.get("typ"))
        if typ == CHECKPOINT_MEDIA_TYPE:
            return f"{prefix}/{decode_checkpoint(compact.payload).gateway}/checkpoint"
        return f"{prefix}/{decode_batch(compact.payload, typ).gateway}/batch"
    except EnvelopeError:
        return f"{prefix}/-/batch"


@receiver.command(name="import")
@_CONFIG
@_JSON
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@handle_errors
def import_command(config_path: Path, as_json: bool, files: tuple[Path, ...]) -> None:
    """Ingest exported envelopes (from `nengtan agent export`: one signed token per line)
    through the normal pipeline: verified, chain-checked, deduplicated, stored or quarantined
    exactly as if they had come from the broker. This is how cycles that `nengtan receiver
    gaps` lists as missing are filled across a data diode. Safe to re-run (duplicates are
    counted, not stored) and beside the running receiver. Exits with status 1 if any line
    was quarantined.

    \b
    Example:
        nengtan receiver import --config receiver.toml /media/usb/gw01-1200-1262.jws
    """
    config = load_config(config_path)
    if not config.registry_dir.is_dir():
        raise IdentityError(f"the registry directory {config.registry_dir} does not exist")
    prefix = config.mqtt.topic_prefix
    results: list[dict[str, object]] = []
    store = open_store(config.storage)
    try:
        registry = Registry(store, config.registry_dir)
        registry.reload()
        ingestor = Ingestor(store, registry, topic_prefix=prefix)
        for path in files:
            counts: Counter[str] = Counter()
            quarantined: Counter[str] = Counter()
            readings = 0
            with path.open("rb") as lines:
                for raw in lines:
                    token = raw.strip()
                    if not token:
                        continue
                    outcome = ingestor.ingest(_import_topic(prefix, token), token)
                    counts[outcome.status] += 1
                    readings += outcome.readings
                    if outcome.status == Status.QUARANTINED:
                        quarantined[outcome.reason or "internal"] += 1
            results.append({"file": str(path), "accepted": counts[Status.ACCEPTED],
                            "duplicate": counts[Status.DUPLICATE],
                            "quarantined": dict(sorted(quarantined.items())),
                            "readings": readings})
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"files": results}, ensure_ascii=False, indent=2))
    else:
        for r in results:
            bad = r["quarantined"]
            assert isinstance(bad, dict)
            why = f" ({', '.join(f'{k} {v}' for k, v in bad.items())})" if bad else ""
            click.echo(f"{r['file']}: {r['accepted']} accepted ({r['readings']} new readings), "
                       f"{r['duplicate']} duplicate, {sum(bad.values())} quarantined{why}")
    if any(r["quarantined"] for r in results):
        sys.exit(EXIT_ERROR)


@receiver.command(name="retire")
@_CONFIG
@_JSON
@click.option("--idle-s", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Finish when nothing has arrived for this long after unsubscribing.")
@click.option("--timeout-s", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Give up (keeping the session) if messages still arrive after this.")
@handle_errors
def retire_command(config_path: Path, as_json: bool, idle_s: float, timeout_s: float) -> None:
    """Take a receiver out of service without losing its queued share: resume its broker
    session, unsubscribe, ingest what was queued for it, then end the session. Stop (and
    disable) the member's service first. Safe to re-run; a failure keeps the session.

    \b
    Example:
        systemctl disable --now nengtan-receiver    # on the member's host
        nengtan receiver retire --config /etc/nengtan-receiver/receiver.toml --json
    """
    from cloud_receiver.retire import retire

    config = load_config(config_path)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = retire(config, idle_s=idle_s, timeout_s=timeout_s)
    if as_json:
        click.echo(json.dumps({"client_id": result.client_id,
                               "session_present": result.session_present,
                               "messages": result.messages, "outcomes": result.outcomes,
                               "seconds": round(result.seconds, 3)}, indent=2))
        return
    found = "" if result.session_present else " (the broker held no session under it)"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items())) or "none"
    click.echo(f"retired {result.client_id}{found}: {result.messages} queued message(s) "
               f"ingested ({counts}) in {result.seconds:.1f} s; its session is ended")
