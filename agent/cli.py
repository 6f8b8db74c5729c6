"""`nengtan agent …`: run the agent and the technician's read-only tools around it."""

from __future__ import annotations

import json
import os
import signal
import time
import threading
from dataclasses import asdict
from pathlib import Path

import click

from agent.buffer import StoreReport, export_envelopes, inspect_store
from agent.config import load_config
from agent.runner import BUFFER_FILE, MIB, STATS_FILE, build_agent, make_poller
from agent.scan import scan_command
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors, setup_logging
from nengtan.errors import StoreError

CONFIG = click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                      default="/etc/nengtan/agent.toml", show_default=True, help="Agent config file.")


@click.group(context_settings=CONTEXT_SETTINGS)
def agent() -> None:
    """The gateway agent: poll meters, buffer every reading, forward signed batches."""


@agent.command()
@CONFIG
@click.option("--duration", type=float, help="Stop after this many seconds (for scripts and tests).")
@click.option("--verbose", "-v", is_flag=True, help="Log every step.")
@handle_errors
def run(config_path: Path, duration: float | None, verbose: bool) -> None:
    """Run the agent until SIGTERM or Ctrl-C.

    Example:

        nengtan agent run --config /etc/nengtan/agent.toml
    """
    setup_logging(verbose)
    config = load_config(config_path)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    daemon = build_agent(config)
    try:
        daemon.run(stop, duration=duration)
    finally:
        daemon.close()


@agent.command("check-config")
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def check_config(config_path: Path, as_json: bool) -> None:
    """Validate a config without opening any port; list every problem with its path.

    Example:

        nengtan agent check-config --config agent.toml
    """
    config = load_config(config_path)
    summary = {"gateway": config.gateway.id,
               "buses": [{"port": b.port, "meters": [m.id for m in b.meters]} for b in config.buses]}
    if as_json:
        emit_json({"ok": True, **summary})
    else:
        meters = sum(len(b.meters) for b in config.buses)
        click.echo(f"{config_path}: ok ({len(config.buses)} bus(es), {meters} meter(s))")


@agent.command()
@CONFIG
@click.argument("meter_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def read(config_path: Path, meter_id: str, as_json: bool) -> None:
    """Read one meter once and print every value (the agent must not be polling the same port).

    Example:

        nengtan agent read main-incomer --config agent.toml --json
    """
    config = load_config(config_path)
    try:
        bus_config, meter = config.meter(meter_id)
    except KeyError:
        raise click.BadParameter(f"no meter {meter_id!r} in {config_path}", param_hint="METER_ID") from None
    poller = make_poller(bus_config)
    try:
        poller.open()
        readings = poller.read(meter.id).readings
    finally:
        poller.close()
    if as_json:
        emit_json([asdict(r) for r in readings])
        return
    for r in readings:
        value = "—" if r.value is None else f"{r.value:.4f}"
        click.echo(f"{r.measurement:28} {value:>16}  {r.quality}")


@agent.command()
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def status(config_path: Path, as_json: bool) -> None:
    """Show the local buffer (read-only, safe beside the running agent): epoch, unsent depth,
    age of the oldest unsent cycle, size against the cap, pending gaps, alarms, quarantine.

    Example:

        nengtan agent status --config /etc/nengtan/agent.toml --json
    """
    config = load_config(config_path)
    report = inspect_store(config.gateway.state_dir / BUFFER_FILE,
                           max_bytes=config.gateway.buffer_max_mb * MIB,
                           full_policy=config.gateway.buffer_full_policy)
    if as_json:
        emit_json(asdict(report))
        return
    for label, value in _status_lines(report):
        click.echo(f"{label:16} {value}")
    for alarm in report.alarms:
        when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(alarm.raised_ms / 1000))
        click.echo(f"  {when}  {alarm.kind}: {alarm.message}")


def _status_lines(report: StoreReport) -> list[tuple[str, str]]:
    s = report.stats
    age = "-" if report.oldest_unsent_age_s is None else _duration(report.oldest_unsent_age_s)
    cap = f"{s.db_bytes / MIB:.1f} MiB of {(s.max_bytes or 0) / MIB:.0f} MiB cap " \
          f"({100 * s.db_bytes / (s.max_bytes or 1):.0f} %), policy {report.full_policy}"
    gaps = ", ".join(f"{g.first}..{g.last} ({g.readings} readings, {g.reason})"
                     for g in report.gaps) or "none"
    return [
        ("epoch", f"{s.epoch} (epoch file: {report.epoch_file if report.epoch_file else 'missing'})"),
        ("last seq", str(s.last_seq)),
        ("sealed", f"up to cycle {s.sealed_last}, {s.sealed_envelopes} envelope(s) this epoch "
                   "(what the checkpoints state)"),
        ("unsent", f"{s.unsent_cycles} cycle(s), {s.unsent_readings} reading(s), "
                   f"{s.unsent_envelopes} sealed envelope(s), {s.unsealed_cycles} unsealed cycle(s)"),
        ("oldest unsent", age),
        ("stored", f"{s.cycles} cycle(s) including sent history"),
        ("size", cap),
        ("pending gaps", gaps),
        ("dropped", f"{s.dropped_cycles} cycle(s), {s.dropped_readings} reading(s) this epoch"),
        ("quarantine", ", ".join(report.quarantined) or "empty"),
        ("alarms", f"{report.alarm_count}" + (f" (last {len(report.alarms)} below)"
                                              if report.alarms else "")),
    ]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@agent.command()
@CONFIG
@click.option("--from-seq", "first", required=True, type=click.IntRange(min=1),
              help="First cycle wanted (as `nengtan receiver gaps` lists it).")
@click.option("--to-seq", "last", required=True, type=click.IntRange(min=1),
              help="Last cycle wanted (inclusive).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write: one signed envelope per line.")
@click.option("--epoch", type=click.IntRange(min=1), default=None,
              help="Refuse unless the buffer holds this epoch (the one the receiver lists).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def export(config_path: Path, first: int, last: int, out_path: Path, epoch: int | None,
           as_json: bool) -> None:
    """Write the stored envelopes holding cycles FROM..TO to a file, exactly as they were signed,
    for `nengtan receiver import` on the far side of a data diode (read-only, safe beside the
    running agent).

    Every envelope holding any cycle of the range goes out whole. Cycles no stored envelope
    holds (history older than history_days, dropped at the disk cap, or not sealed yet) are
    listed; nothing is written when none is stored.

    Example:

        nengtan agent export --config /etc/nengtan/agent.toml --from-seq 1200 --to-seq 1262 \
            --out /media/usb/gw01-1200-1262.jws
    """
    if last < first:
        raise click.BadParameter(f"--to-seq {last} is below --from-seq {first}",
                                 param_hint="--to-seq")
    config = load_config(config_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        with tmp.open("w", encoding="ascii") as out:
            report = export_envelopes(config.gateway.state_dir / BUFFER_FILE, first, last, out,
                                      epoch=epoch)
            out.flush()
            os.fsync(out.fileno())
        if report.envelopes == 0:
            raise StoreError(f"no stored envelope holds any cycle of {first}..{last} in epoch "
                             f"{report.epoch}: expired, dropped or not sealed yet")
        os.replace(tmp, out_path)  # a file that exists is complete
    except OSError as exc:
        raise StoreError(f"cannot write {out_path}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    if as_json:
        emit_json({**asdict(report), "file": str(out_path)})
        return
    click.echo(f"{out_path}: {report.envelopes} envelope(s), cycles {report.first}..{report.last} "
               f"of epoch {report.epoch}")
    for a, b in report.not_stored:
        click.echo(f"not in the buffer: cycles {a}..{b} (history expired, dropped at the disk "
                   "cap, or not sealed yet)", err=True)


@agent.command("bus-stats")
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def bus_stats(config_path: Path, as_json: bool) -> None:
    """Per meter: requests, failures by kind, latency and back-off, as the running agent last
    wrote them (every few seconds) to its state directory.

    Example:

        nengtan agent bus-stats --config /etc/nengtan/agent.toml
    """
    config = load_config(config_path)
    path = config.gateway.state_dir / STATS_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"no bus statistics at {path}: is the agent running with this config?") from exc
    if as_json:
        emit_json(doc)
        return
    age = time.time() - doc["written_at"]
    click.echo(f"written {age:.0f} s ago")
    header = (f"{'meter':<16} {'requests':>8} {'ok':>7} {'silent':>6} {'garbled':>7} {'except':>6} "
              f"{'skipped':>7} {'lat ms':>7} {'max ms':>7}  back-off")
    for bus, meters in doc["buses"].items():
        click.echo(f"\n{bus}\n{header}")
        for meter_id, s in meters.items():
            backoff = "-"
            if s["backoff_failures"]:
                backoff = f"{s['backoff_failures']} failure(s), next try in " \
                          f"{max(0.0, s['backoff_until'] - time.time()):.0f} s"
            click.echo(f"{meter_id:<16} {s['requests']:>8} {s['ok']:>7} {s['silent']:>6} "
                       f"{s['garbled']:>7} {s['exceptions']:>6} {s['skipped']:>7} "
                       f"{s['latency_ms']:>7.1f} {s['latency_max_ms']:>7.1f}  {backoff}")


@agent.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """List the meter models this agent knows (agent/meters/models), with their sources.

    Example:

        nengtan agent models --json
    """
    from agent.meters import models as shipped

    rows = [{"model": name, "manufacturer": m.manufacturer, "description": m.description,
             "points": len(m.points), "max_registers": m.max_registers, "source": m.source}
            for name, m in sorted(shipped().items())]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        click.echo(f"{row['model']:<24} {row['manufacturer']:<12} {row['points']:>3} points  "
                   f"{row['description']}")


agent.add_command(scan_command)
