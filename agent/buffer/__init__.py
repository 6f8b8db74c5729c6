"""Durable buffers between the meters and the uplink. Every implementation passes one contract
suite (tests/unit/buffer/test_contract.py): add a cycle, begin a batch, end it with what the next
hop accepted and rejected; drops are declared as signed gaps, never silent."""

from agent.buffer._clock import system_clock
from agent.buffer._contract import (
    FULL_POLICIES,
    LIVE_S,
    Alarm,
    Buffer,
    BufferFull,
    BufferStats,
    ChainHead,
    ClockSource,
    Sealed,
    Sealer,
)
from agent.buffer._export import ExportReport, export_envelopes
from agent.buffer._handover import buffer_holder, next_signed_cycle
from agent.buffer._inspect import StoreReport, inspect_store
from agent.buffer._memory import MemoryBuffer
from agent.buffer._sqlite import SqliteBuffer

__all__ = [
    "FULL_POLICIES",
    "LIVE_S",
    "Alarm",
    "Buffer",
    "BufferFull",
    "BufferStats",
    "ChainHead",
    "ClockSource",
    "ExportReport",
    "MemoryBuffer",
    "Sealed",
    "Sealer",
    "SqliteBuffer",
    "StoreReport",
    "buffer_holder",
    "export_envelopes",
    "inspect_store",
    "next_signed_cycle",
    "system_clock",
]
