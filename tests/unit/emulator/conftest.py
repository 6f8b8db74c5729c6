"""Fixtures: an emulated bus with a DTSU666 (unit 1) and an SDM630 (unit 2), and real clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient

from hw_tests.emulator import PtyBus, start_bus

SPEEDUP = 600.0  # ten emulated minutes per second: energy visibly moves between two reads
MakeClient = Callable[..., ModbusSerialClient]


@pytest.fixture
def bus() -> Iterator[PtyBus]:
    with start_bus([("chint-dtsu666", 1), ("eastron-sdm630", 2)], speedup=SPEEDUP, seed=1) as b:
        yield b


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """Open the agent's kind of client (RTU, 0.5 s timeout, no retries) on a port; closed after."""
    opened: list[ModbusSerialClient] = []

    def make(port: str, **line: object) -> ModbusSerialClient:
        settings: dict[str, object] = {"baudrate": 9600, "timeout": 0.5, "retries": 0}
        settings.update(line)
        client = ModbusSerialClient(port, framer=FramerType.RTU,
                                    **settings)  # type: ignore[arg-type]
        opened.append(client)
        assert client.connect(), f"cannot open {port}"
        return client

    yield make
    for client in opened:
        client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def client(bus: PtyBus, make_client: MakeClient) -> ModbusSerialClient:
    return make_client(bus.port)
