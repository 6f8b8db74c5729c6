"""Durable buffers between the meters and the uplink. Every implementation passes one contract
suite (tests/unit/buffer/test_contract.py): add a cycle, begin a batch, end it with what the next
hop accepted and rejected."""

from agent.buffer._contract import Buffer, BufferStats, Sealed, Sealer
from agent.buffer._memory import MemoryBuffer
from agent.buffer._sqlite import SqliteBuffer

__all__ = ["Buffer", "BufferStats", "MemoryBuffer", "Sealed", "Sealer", "SqliteBuffer"]
