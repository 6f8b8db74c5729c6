"""The Modbus TCP input against a real pymodbus TCP server on loopback (no mocks)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.server import ModbusTcpServer

from agent.config import BusConfig, MeterConfig
from agent.inputs.modbus_tcp.bus import tcp_poller
from agent.meters import encode_value, models
from nengtan.broker import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def sdm630_server() -> Iterator[int]:
    registers = [0] * 0x50
    for address, value in ((0x0000, 231.5), (0x0046, 50.02), (0x0048, 4321.25)):
        registers[address:address + 2] = encode_value(value, "float32")
    # pymodbus's own simulator device (its datastore is deprecated since 3.13): raw registers at
    # wire addresses 0x0000-0x004F, served to FC03 and FC04 alike.
    context = SimDevice(7, [SimData(0, count=len(registers), values=registers,
                                    datatype=DataType.REGISTERS)])
    port = free_port()
    loop = asyncio.new_event_loop()
    servers: list[ModbusTcpServer] = []
    ready = threading.Event()

    async def main() -> None:
        # pymodbus builds its transport on the running loop, so the server is made in here.
        server = ModbusTcpServer(context, address=("127.0.0.1", port))
        servers.append(server)
        loop.call_soon(ready.set)
        await server.serve_forever()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    deadline = time.monotonic() + 5
    while True:  # serve_forever binds a moment after it starts
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the Modbus TCP server did not listen"
            time.sleep(0.02)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(servers[0].shutdown(), loop).result(5)
        thread.join(5)
        loop.close()


def _bus(port: int, unit: int) -> BusConfig:
    meter = MeterConfig("plc-feeder", models()["eastron-sdm630"], unit, 10, 10)
    return BusConfig("tcp", f"127.0.0.1:{port}", 0, "N", 1, 500, 10, (meter,), framer="socket")


def test_a_meter_behind_modbus_tcp_is_read_with_good_quality(sdm630_server: int) -> None:
    poller = tcp_poller(_bus(sdm630_server, 7))
    try:
        assert poller.open()
        values = {r.measurement: (r.value, r.quality) for r in poller.read("plc-feeder").readings}
    finally:
        poller.close()
    assert values["voltage_l1_n"] == (231.5, "good")
    assert values["active_energy_import"] == (4321.25, "good")
    assert values["frequency"][0] == pytest.approx(50.02, abs=1e-4)


def test_an_absent_unit_behind_tcp_is_flagged_bad_not_fatal(sdm630_server: int) -> None:
    poller = tcp_poller(_bus(sdm630_server, 9))
    try:
        poller.open()
        result = poller.read("plc-feeder")
    finally:
        poller.close()
    assert {r.quality for r in result.readings} == {"bad"}
