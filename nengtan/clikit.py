"""What every `nengtan` sub-command shares: error-to-exit-code mapping and JSON output."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

from nengtan.errors import ConfigError, NengtanError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_ERROR = 1
EXIT_CONFIG = 2
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into a message, a fix-it hint and an exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except NengtanError as exc:
            click.echo(f"error: {exc}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_ERROR)

    return wrapper


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class LazyGroup(click.Group):
    """A group whose sub-commands are imported only when one is run (or listed in help).

    Why: `nengtan agent run` on a Pi should not import the receiver's accounting and
    PostgreSQL code, nor `nengtan receiver run` the agent's Modbus stack; importing everything
    cost over a second per command. ``lazy`` maps a command name to "module:attribute".
    A command whose package is not installed (a gateway image without the receiver) is not
    listed, and naming it says so instead of failing with a traceback.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def _installed(self, name: str) -> bool:
        package = self.lazy[name].split(":")[0].split(".")[0]
        return importlib.util.find_spec(package) is not None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx),
                       *(name for name in self.lazy if self._installed(name))})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        if not self._installed(cmd_name):
            return None
        module, attribute = self.lazy[cmd_name].split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
            raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
        return command
