"""The buffer factory every contract test runs against: once in memory, once in SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from buffer_helpers import SIGNER, FakeClock

from agent.buffer import Buffer, MemoryBuffer, SqliteBuffer
from nengtan.envelope import seal

Factory = Callable[..., Buffer]


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[Buffer] = []

    def factory(**kwargs: Any) -> Buffer:
        kwargs.setdefault("sealer", lambda env: seal(SIGNER, env))
        kwargs.setdefault("clock", FakeClock())
        buffer: Buffer = (MemoryBuffer(gateway="gw", **kwargs) if request.param == "memory"
                          else SqliteBuffer(tmp_path / "buffer.db", gateway="gw", **kwargs))
        opened.append(buffer)
        return buffer

    yield factory
    for buffer in opened:
        buffer.close()
