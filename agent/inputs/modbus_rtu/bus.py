"""Modbus RTU over an RS-485 port, through pymodbus's synchronous serial client.

The client gets the configured timeout and no retries: pymodbus's defaults (3 s × 3 retries)
would let one silent meter cost 12 s of bus time. Retrying and backing off are the poller's job.
"""

from __future__ import annotations

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient

from agent.config import BusConfig
from agent.meters import LineTiming
from agent.modbus._poller import ModbusPoller


def rtu_poller(config: BusConfig) -> ModbusPoller:
    timing = LineTiming(config.baudrate, config.parity, config.stopbits)
    poller: ModbusPoller
    client = ModbusSerialClient(
        config.port, framer=FramerType.RTU, baudrate=config.baudrate, bytesize=8,
        parity=config.parity, stopbits=config.stopbits, timeout=config.timeout_ms / 1000,
        retries=0, reconnect_delay=0, trace_packet=lambda sending, data: poller.note_traffic(sending, data),
    )
    poller = ModbusPoller(client, config.meters, timing=timing, timeout_s=config.timeout_ms / 1000)
    return poller
