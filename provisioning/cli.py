"""`nengtan provision …`: the technician's verbs, thin over provisioning/ and agent.config."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from agent.config import load_config, render_docs, render_sample
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors
from provisioning.identity import enrollment_for, init_gateway, write_enrollment
from provisioning.rotation import AGENT_ALGORITHMS, rotate_gateway


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


@provision.command()
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default="/etc/nengtan/agent.toml", show_default=True,
              help="The agent config: gateway id, key file and state directory.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The agent's buffer directory (default: gateway.state_dir of the config).")
@click.option("--alg", type=click.Choice(AGENT_ALGORITHMS), default="Ed25519", show_default=True,
              help="Algorithm of the new key (HS256 is for MicroPython nodes, not this agent).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def rotate(config_path: Path, state_dir: Path | None, alg: str, as_json: bool) -> None:
    """Replace the gateway's signing key; write the rotation record for the receiver.

    STOP THE AGENT FIRST (sudo systemctl stop nengtan-agent): the command refuses while the
    buffer is open. The new key signs from the first cycle the buffer has not sealed yet; the
    record, signed by the old and the new key, says so. Apply it on the receiver with
    `nengtan receiver keys rotate` BEFORE starting the agent again, or its first envelopes are
    quarantined as unknown_key. The old key is kept as gateway.key.<kid>.retired (mode 0600).
    Safe to re-run: while the agent has sealed nothing since, the pending record is shown again
    (delete it to rotate once more). See docs/keys.md.

    \b
    Example:
        sudo systemctl stop nengtan-agent
        nengtan provision rotate --config /etc/nengtan/agent.toml --state-dir /var/lib/nengtan
        cp /etc/nengtan/*.rotation.*.json /media/usb/
    """
    config = load_config(config_path)
    result = rotate_gateway(gateway=config.gateway.id, key_file=config.gateway.key_file,
                            state_dir=state_dir or config.gateway.state_dir, alg=alg)
    if as_json:
        emit_json(asdict(result))
        return
    verb = "rotated" if result.created else "already rotated (pending)"
    click.echo(f"{verb}: {result.gateway} signs with {result.new_kid} ({result.alg}) instead of "
               f"{result.old_kid} from epoch {result.from_epoch} seq {result.from_seq}\n"
               f"record: {result.record}\nold key kept in {result.retired_key}\n"
               "next: nengtan receiver keys rotate --config receiver.toml <record>, "
               "then start the agent")


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
