"""The `nengtan` command: one entry point, one sub-command group per package."""

from __future__ import annotations

import click

from agent.cli import agent
from nengtan import __version__
from nengtan.clikit import CONTEXT_SETTINGS
from provisioning.cli import provision


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="nengtan")
def main() -> None:
    """Nengtan: RS-485 meters to signed, verified energy-carbon figures.

    Example:

        nengtan demo --duration 60
    """


main.add_command(agent)
main.add_command(provision)

try:  # the receiver and the demo are optional on a gateway image
    from cloud_receiver.cli import receiver

    main.add_command(receiver)
except ImportError:  # pragma: no cover - only on a gateway-only install
    pass

try:
    from nengtan.demo import demo

    main.add_command(demo)
except ImportError:  # pragma: no cover
    pass
