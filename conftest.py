"""Suite-wide pytest hooks.

The suite runs on two xdist workers (scripts/test). The hardware-in-the-loop tests time real
daemons against timing-true serial emulators, so they share one xdist group: they run one after
another on one worker, never two at once, while unit and integration tests fill the other.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "hw_tests" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group("hw"))
