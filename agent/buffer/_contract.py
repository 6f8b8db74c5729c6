"""The buffer contract.

``add`` commits one poll cycle and returns its sequence number, assigned inside the same
transaction. ``begin`` returns sealed envelopes that are neither sent nor in flight, oldest first,
sealing unsealed cycles on the way; a sealed envelope never changes, so a resend is byte-identical
and the hash chain stays fixed. ``end`` records the next hop's verdict: accepted envelopes are
sent for good, rejected ones become eligible for ``begin`` again. Anything in flight when the
process dies is simply sent again after restart (at least once; the receiver deduplicates).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nengtan.envelope import Envelope, Reading

Sealer = Callable[[Envelope], str]


@dataclass(frozen=True)
class Sealed:
    seq: int
    last: int
    token: str
    readings: int


@dataclass(frozen=True)
class BufferStats:
    epoch: int
    cycles: int  # every cycle still stored
    unsent_cycles: int
    unsent_readings: int
    oldest_unsent_ms: int | None
    last_seq: int


class Buffer(Protocol):
    @property
    def epoch(self) -> int: ...

    def add(self, readings: Sequence[Reading], *, taken_ms: int, time_synced: bool) -> int: ...

    def begin(self, *, max_envelopes: int, max_readings: int) -> list[Sealed]: ...

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None: ...

    def stats(self) -> BufferStats: ...

    def close(self) -> None: ...
