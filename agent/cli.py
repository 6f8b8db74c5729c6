"""`nengtan agent …`: run the agent and the technician's read-only tools around it."""

from __future__ import annotations

import signal
import threading
from dataclasses import asdict
from pathlib import Path

import click

from agent.buffer import SqliteBuffer
from agent.config import load_config
from agent.inputs.modbus_rtu.bus import RtuBus
from agent.runner import BUFFER_FILE, build_agent
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
    bus = RtuBus(bus_config)
    try:
        bus.open()
        readings = bus.read_meter(meter)
    finally:
        bus.close()
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
    """Show the local buffer: cycles stored, unsent readings, the oldest unsent one.

    Example:

        nengtan agent status --config /etc/nengtan/agent.toml
    """
    config = load_config(config_path)
    path = config.gateway.state_dir / BUFFER_FILE
    if not path.exists():
        raise StoreError(f"no buffer at {path} yet: the agent has not run with this config")
    buffer = SqliteBuffer(path, gateway=config.gateway.id, sealer=lambda _: "")
    try:
        stats = buffer.stats()
    finally:
        buffer.close()
    if as_json:
        emit_json(asdict(stats))
    else:
        for key, value in asdict(stats).items():
            click.echo(f"{key:18} {value}")
