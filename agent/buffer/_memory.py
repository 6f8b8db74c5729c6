"""An in-memory buffer: the reference implementation of the contract, for tests and tools.
It keeps nothing across a restart and has no disk cap, so the agent never uses it for real
readings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.buffer._clock import is_live, system_clock
from agent.buffer._contract import (
    LIVE_S,
    Alarm,
    BufferStats,
    ChainHead,
    ClockSource,
    Sealed,
    Sealer,
    send_order,
)
from nengtan.envelope import Cycle, Envelope, Reading, envelope_hash

SEAL_BUDGET = 50_000  # readings sealed per begin() call, at most (always at least one envelope)


@dataclass
class _Cycle:
    seq: int
    taken_ms: int
    synced: bool
    readings: tuple[Reading, ...]
    boot: str
    mono_ms: int
    envelope: int | None = None


@dataclass
class _Envelope:
    sealed: Sealed
    boot: str
    mono_ms: int
    sent_ms: int | None = None


class MemoryBuffer:
    def __init__(self, *, gateway: str, sealer: Sealer, epoch: int = 1,
                 clock: ClockSource = system_clock, seal_budget: int = SEAL_BUDGET,
                 live_s: float = LIVE_S) -> None:
        self._gateway, self._sealer, self._epoch, self._clock = gateway, sealer, epoch, clock
        self._seal_budget, self._live_s = seal_budget, live_s
        self._cycles: dict[int, _Cycle] = {}
        self._envelopes: dict[int, _Envelope] = {}
        self._inflight: set[int] = set()
        self._alarms: list[Alarm] = []
        self._head: str | None = None
        self._next = 1
        self._sealed_up_to = 0  # every cycle with seq <= this is sealed
        self._sealed_count = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    def add(self, readings: Sequence[Reading], *, taken_ms: int, time_synced: bool) -> int:
        now = self._clock()
        seq, self._next = self._next, self._next + 1
        self._cycles[seq] = _Cycle(seq, taken_ms, time_synced, tuple(readings), now.boot_id, now.mono_ms)
        return seq

    def _seal_one(self, max_readings: int) -> int:
        run: list[_Cycle] = []
        total = 0
        for seq in range(self._sealed_up_to + 1, self._next):
            c = self._cycles[seq]
            if run and (c.synced != run[0].synced or total + len(c.readings) > max_readings):
                break
            run.append(c)
            total += len(c.readings)
        if not run:
            return 0
        env = Envelope(self._gateway, self._epoch, run[0].seq, run[-1].seq, self._head,
                       run[0].synced, tuple(Cycle(c.seq, c.readings) for c in run),
                       clock=self._clock())
        token = self._sealer(env)
        self._head = envelope_hash(token)
        for c in run:
            c.envelope = env.seq
        self._sealed_up_to = env.last
        self._sealed_count += 1
        self._envelopes[env.seq] = _Envelope(Sealed(env.seq, env.last, token, total),
                                             run[-1].boot, run[-1].mono_ms)
        return max(total, 1)

    def begin(self, *, max_envelopes: int, max_readings: int) -> list[Sealed]:
        budget = self._seal_budget
        while budget > 0 and (done := self._seal_one(max_readings)):
            budget -= done
        now = self._clock()
        unsent = [(seq, is_live(now, e.boot, e.mono_ms, self._live_s))
                  for seq, e in sorted(self._envelopes.items()) if e.sent_ms is None]
        order = send_order(unsent, reversed(unsent), self._inflight, max_envelopes)
        self._inflight.update(order)
        return [self._envelopes[seq].sealed for seq in order]

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None:
        now = self._clock().wall_ms
        for seq in accepted:
            self._inflight.discard(seq)
            if seq in self._envelopes:
                self._envelopes[seq].sent_ms = now
        for seq in rejected:
            self._inflight.discard(seq)

    def chain_head(self) -> ChainHead:
        return ChainHead(self._sealed_up_to, self._head, self._sealed_count)

    def sealed(self, seqs: Iterable[int]) -> list[Sealed]:
        return [self._envelopes[seq].sealed for seq in dict.fromkeys(seqs) if seq in self._envelopes]

    def recently_sent(self, *, since_ms: int, limit: int) -> list[int]:
        found = [seq for seq, e in sorted(self._envelopes.items())
                 if e.sent_ms is not None and e.sent_ms >= since_ms]
        return found[-limit:] if limit > 0 else []

    def prune_history(self, *, sent_before_ms: int) -> int:
        gone = 0
        for seq, e in sorted(self._envelopes.items()):
            if e.sent_ms is not None and e.sent_ms < sent_before_ms:
                for cycle_seq in range(e.sealed.seq, e.sealed.last + 1):
                    gone += self._cycles.pop(cycle_seq, None) is not None
                del self._envelopes[seq]
        return gone

    def alarm(self, kind: str, message: str) -> None:
        self._alarms.append(Alarm(self._clock().wall_ms, kind, message))

    def alarms(self) -> list[Alarm]:
        return list(self._alarms)

    def stats(self) -> BufferStats:
        def unsent(c: _Cycle) -> bool:
            return c.envelope is None or self._envelopes[c.envelope].sent_ms is None

        waiting = [c for c in self._cycles.values() if unsent(c)]
        return BufferStats(
            self._epoch, len(self._cycles), len(waiting), sum(len(c.readings) for c in waiting),
            min((c.taken_ms for c in waiting), default=None), self._next - 1,
            unsent_envelopes=sum(e.sent_ms is None for e in self._envelopes.values()),
            unsealed_cycles=sum(c.envelope is None for c in self._cycles.values()),
            sealed_last=self._sealed_up_to, sealed_envelopes=self._sealed_count,
        )

    def close(self) -> None:
        pass
