"""The `nengtan` command: one entry point, one sub-command group per package.

The groups are imported only when used (``LazyGroup``), so a command on a Pi loads the agent
and nothing of the receiver, and the other way round.
"""

from __future__ import annotations

import click

from nengtan import __version__
from nengtan.clikit import CONTEXT_SETTINGS, LazyGroup


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS, lazy={
    "agent": "agent.cli:agent",
    "provision": "provisioning.cli:provision",
    # The receiver and the demo are optional on a gateway image.
    "receiver": "cloud_receiver.cli:receiver",
    "demo": "nengtan.demo:demo",
})
@click.version_option(__version__, prog_name="nengtan")
def main() -> None:
    """Nengtan: RS-485 meters to signed, verified energy-carbon figures.

    Example:

        nengtan demo --duration 60
    """
