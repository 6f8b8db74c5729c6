"""An in-memory buffer: the reference implementation of the contract, for tests and tools.
It keeps nothing across a restart, so the agent never uses it for real readings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.buffer._contract import BufferStats, Sealed, Sealer
from nengtan.envelope import Cycle, Envelope, Reading, envelope_hash


@dataclass
class _Cycle:
    seq: int
    taken_ms: int
    synced: bool
    readings: tuple[Reading, ...]
    sealed: bool = False


class MemoryBuffer:
    def __init__(self, *, gateway: str, sealer: Sealer, epoch: int = 1) -> None:
        self._gateway, self._sealer, self._epoch = gateway, sealer, epoch
        self._cycles: list[_Cycle] = []
        self._envelopes: dict[int, tuple[Sealed, bool]] = {}  # seq -> (sealed, sent)
        self._inflight: set[int] = set()
        self._head: str | None = None
        self._next = 1

    @property
    def epoch(self) -> int:
        return self._epoch

    def add(self, readings: Sequence[Reading], *, taken_ms: int, time_synced: bool) -> int:
        seq, self._next = self._next, self._next + 1
        self._cycles.append(_Cycle(seq, taken_ms, time_synced, tuple(readings)))
        return seq

    def _seal(self, max_readings: int) -> bool:
        run: list[_Cycle] = []
        for c in self._cycles:
            if c.sealed:
                continue
            if run and (run[0].synced != c.synced
                        or sum(len(x.readings) for x in run) + len(c.readings) > max_readings):
                break
            run.append(c)
        if not run:
            return False
        env = Envelope(self._gateway, self._epoch, run[0].seq, run[-1].seq, self._head,
                       run[0].synced, tuple(Cycle(c.seq, c.readings) for c in run))
        token = self._sealer(env)
        self._head = envelope_hash(token)
        for c in run:
            c.sealed = True
        self._envelopes[env.seq] = (Sealed(env.seq, env.last, token, env.reading_count), False)
        return True

    def begin(self, *, max_envelopes: int, max_readings: int) -> list[Sealed]:
        def ready() -> list[Sealed]:
            return [s for seq, (s, sent) in sorted(self._envelopes.items())
                    if not sent and seq not in self._inflight]
        while len(ready()) < max_envelopes and self._seal(max_readings):
            pass
        batch = ready()[:max_envelopes]
        self._inflight.update(s.seq for s in batch)
        return batch

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None:
        for seq in accepted:
            self._inflight.discard(seq)
            if seq in self._envelopes:
                self._envelopes[seq] = (self._envelopes[seq][0], True)
        for seq in rejected:
            self._inflight.discard(seq)

    def stats(self) -> BufferStats:
        sent_ranges = [(s.seq, s.last) for s, sent in self._envelopes.values() if sent]
        unsent = [c for c in self._cycles if not any(a <= c.seq <= b for a, b in sent_ranges)]
        return BufferStats(self._epoch, len(self._cycles), len(unsent),
                           sum(len(c.readings) for c in unsent),
                           min((c.taken_ms for c in unsent), default=None), self._next - 1)

    def close(self) -> None:
        pass
