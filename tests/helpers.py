"""Helpers the integration and hardware-in-the-loop tests share."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

import pytest


def mosquitto_binary() -> str:
    """The Mosquitto broker; CI must have it, elsewhere its absence skips with the package name."""
    # Debian installs the broker in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("mosquitto is required in CI (Debian package: mosquitto)")
    pytest.skip("mosquitto is not installed (Debian package: mosquitto)")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
