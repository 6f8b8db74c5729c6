"""What every `nengtan` sub-command shares: error-to-exit-code mapping and JSON output."""

from __future__ import annotations

import functools
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
