"""Helpers the integration and hardware-in-the-loop tests share."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

import pytest


def installed_tool(name: str, package: str, also_in: str = "") -> str:
    """The path of the program ``name``; CI must have it, elsewhere its absence skips with the
    Debian package that brings it. ``also_in`` lists directories to look in beyond PATH."""
    found = shutil.which(name) or (shutil.which(name, path=also_in) if also_in else None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI (Debian package: {package})")
    pytest.skip(f"{name} is not installed (Debian package: {package})")


def mosquitto_binary() -> str:
    """The Mosquitto broker; Debian installs it in /usr/sbin, not on every user's PATH."""
    return installed_tool("mosquitto", "mosquitto", "/usr/sbin:/usr/local/sbin")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
