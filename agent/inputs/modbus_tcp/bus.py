"""Modbus TCP (or RTU frames over TCP, for transparent serial servers) through pymodbus."""

from __future__ import annotations

from pymodbus import FramerType
from pymodbus.client import ModbusTcpClient

from agent.config import BusConfig
from agent.modbus._poller import ModbusPoller


def tcp_poller(config: BusConfig) -> ModbusPoller:
    host, _, port = config.port.rpartition(":")
    poller: ModbusPoller
    client = ModbusTcpClient(
        host, port=int(port), framer=FramerType.RTU if config.framer == "rtu" else FramerType.SOCKET,
        timeout=config.timeout_ms / 1000, retries=0, reconnect_delay=0,
        trace_packet=lambda sending, data: poller.note_traffic(sending, data),
    )
    # No inter-frame silence on TCP; a serial server behind it keeps its own line timing.
    poller = ModbusPoller(client, config.meters, timing=None, timeout_s=config.timeout_ms / 1000)
    return poller
