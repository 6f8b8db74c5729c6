"""`nengtan provision …`: the technician's verbs, thin over provisioning/ and agent.config."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from agent.config import load_config, render_docs, render_sample
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors
from provisioning.identity import enrollment_for, init_gateway, write_enrollment


@click.group(context_settings=CONTEXT_SETTINGS)
def provision() -> None:
    """Gateway identity, configuration and enrollment."""


def _meter(text: str) -> dict[str, Any]:
    try:
        meter_id, model, unit = text.split(":")
        return {"id": meter_id, "model": model, "unit": int(unit)}
    except ValueError:
        raise click.BadParameter(f"{text!r} is not ID:MODEL:UNIT, e.g. main:chint-dtsu666:1",
                                 param_hint="--meter") from None


@provision.command()
@click.option("--gateway-id", required=True, help="Unique gateway id, e.g. henan-zz-plant1-gw01.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default="/etc/nengtan", show_default=True, help="Where gateway.key and agent.toml go.")
@click.option("--state-dir", default="/var/lib/nengtan", show_default=True, help="Buffer directory.")
@click.option("--port", "serial_port", default="/dev/rs485-A", show_default=True, help="RS-485 device.")
@click.option("--baudrate", type=int, default=9600, show_default=True)
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="N", show_default=True)
@click.option("--interval", type=float, default=10.0, show_default=True, help="Poll period, seconds.")
@click.option("--meter", "meters", multiple=True, required=True, help="ID:MODEL:UNIT, repeatable.")
@click.option("--broker", default="localhost:1883", show_default=True, help="HOST:PORT of the broker.")
@click.option("--protocol", type=click.Choice(["5", "3.1.1"]), default="5", show_default=True)
@click.option("--replace", is_flag=True, help="Create a new key even if one exists.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def init(gateway_id: str, directory: Path, state_dir: str, serial_port: str, baudrate: int,
         parity: str, interval: float, meters: tuple[str, ...], broker: str, protocol: str,
         replace: bool, as_json: bool) -> None:
    """Create the gateway's key pair (mode 0600) and its agent config. Safe to re-run.

    Example:

        nengtan provision init --gateway-id plant1-gw01 --meter main:chint-dtsu666:1 \\
            --meter line2:eastron-sdm630:2 --broker mqtt.plant.example:1883
    """
    host, _, port = broker.rpartition(":")
    config = {
        "gateway": {"state_dir": state_dir},
        "inputs": {"modbus_rtu": [{"port": serial_port, "baudrate": baudrate, "parity": parity,
                                   "interval_s": interval, "meters": [_meter(m) for m in meters]}]},
        "outputs": {"mqtt": {"host": host or broker, "port": int(port or 1883), "protocol": protocol}},
    }
    result = init_gateway(gateway=gateway_id, directory=directory, config=config, replace=replace)
    if as_json:
        emit_json(asdict(result))
        return
    verb = "created" if result.created else "kept existing"
    click.echo(f"{verb} key {result.key_file} (kid {result.kid})\nwrote {result.config_file}")


@provision.command()
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default="/etc/nengtan/agent.toml", show_default=True)
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The receiver's enrollment directory (or a USB stick to carry to it).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def enroll(config_path: Path, registry: Path, as_json: bool) -> None:
    """Write this gateway's enrollment record (public key only) for the receiver. Safe to re-run.

    Example:

        nengtan provision enroll --config /etc/nengtan/agent.toml --registry /media/usb/enroll
    """
    path = write_enrollment(enrollment_for(load_config(config_path)), registry)
    if as_json:
        emit_json({"enrollment": str(path)})
    else:
        click.echo(f"wrote {path}")


@provision.group()
def config() -> None:
    """The agent config: sample, reference docs, validation."""


@config.command()
def sample() -> None:
    """Print a commented sample agent config, generated from the schema.

    Example:

        nengtan provision config sample > agent.toml
    """
    click.echo(render_sample(), nl=False)


@config.command()
def docs() -> None:
    """Print the config reference (docs/config-agent.md), generated from the schema.

    Example:

        nengtan provision config docs > docs/config-agent.md
    """
    click.echo(render_docs(), nl=False)
