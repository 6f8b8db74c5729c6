"""The buffer contract.

``add`` commits one poll cycle and returns its sequence number, assigned inside the same
transaction; sequence order never depends on the wall clock. ``begin`` seals unsealed cycles into
envelopes (in seq order, a bounded amount of work per call, so the hash chain always follows seq
order) and returns sealed envelopes that are neither sent nor in flight. A sealed envelope never
changes, so a resend is byte-identical and the chain stays fixed. ``end`` records the next hop's
verdict: accepted envelopes are sent for good, rejected ones become eligible for ``begin`` again.
Anything in flight when the process dies is simply sent again after restart (at least once; the
receiver deduplicates).

Send order: normally oldest first. During a drain (the oldest ready envelope was committed more
than ``LIVE_S`` ago on the monotonic clock, or in an earlier boot) every call returns the live
envelopes first, newest first, then fills up with the oldest: live data stays about a minute late
at most while days of backlog drain behind it.

For checkpoints and one-way links: ``chain_head`` says how far the sealed chain reaches (what a
signed checkpoint states); ``sealed`` hands back stored envelopes by seq, sent or not, byte for
byte, for a redundant resend; ``recently_sent`` finds what was sent shortly before a restart.

Nothing leaves silently: a buffer that has to drop committed cycles (the SQLite disk cap) records
a ``Gap`` that is sealed, signed, into the next envelope; one that must refuse a cycle raises
``BufferFull`` after declaring it the same way. ``alarm`` records what a technician must see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nengtan.envelope import ClockInfo, Envelope, Reading
from nengtan.errors import StoreError

Sealer = Callable[[Envelope], str]
ClockSource = Callable[[], ClockInfo]

LIVE_S = 60.0  # an envelope whose newest cycle is younger than this (monotonic) is live data
FULL_POLICIES = ("drop_oldest", "block")


class BufferFull(StoreError):
    """``add`` refused a cycle: the store is at its cap and the policy is "block" (or the disk is
    really full). The refused cycle was given a seq and declared as a gap where possible."""

    hint = "Raise [gateway] buffer_max_mb, free the disk, or restore the uplink so the backlog drains."


@dataclass(frozen=True)
class Sealed:
    seq: int
    last: int
    token: str
    readings: int


@dataclass(frozen=True)
class ChainHead:
    """How far the gateway's envelope chain reaches in the current epoch: what a checkpoint
    states (docs/wire-format.md, "Checkpoints")."""

    last: int  # the last cycle seq sealed into an envelope; 0 if none yet
    head: str | None  # chain hash of the envelope ending at ``last``; None when last is 0
    sealed: int  # envelopes sealed in this epoch, whatever became of them since


@dataclass(frozen=True)
class Alarm:
    raised_ms: int  # wall clock, for the technician; may be wrong on an unsynced Pi
    kind: str  # e.g. store_corrupt, store_missing, buffer_full
    message: str


@dataclass(frozen=True)
class BufferStats:
    epoch: int
    cycles: int  # every cycle still stored (unsent, in flight and sent history)
    unsent_cycles: int
    unsent_readings: int
    oldest_unsent_ms: int | None  # taken_ms (wall clock) of the oldest unsent cycle
    last_seq: int  # the last seq handed out in this epoch
    unsent_envelopes: int = 0
    unsealed_cycles: int = 0
    pending_gaps: int = 0  # gaps recorded but not yet sealed into an envelope
    pending_gap_readings: int = 0
    dropped_cycles: int = 0  # every cycle dropped or refused in this epoch
    dropped_readings: int = 0
    sealed_last: int = 0  # the last cycle sealed into an envelope (ChainHead.last)
    sealed_envelopes: int = 0  # envelopes sealed in this epoch (ChainHead.sealed)
    db_bytes: int = 0  # page_count × page_size + WAL; 0 for a buffer without disk
    max_bytes: int | None = None


def send_order(oldest_first: Iterable[tuple[int, bool]], newest_first: Iterable[tuple[int, bool]],
               inflight: set[int], limit: int) -> list[int]:
    """Which ready envelopes ``begin`` returns, in send order.

    ``oldest_first``/``newest_first`` are (seq, live) of unsent envelopes read from either end
    (each may stop after ``limit + len(inflight)``). While the oldest ready one is live: plain seq
    order. Otherwise (a drain) the live ones newest first, then the oldest.
    """
    old = [(seq, live) for seq, live in oldest_first if seq not in inflight]
    if not old or old[0][1]:
        return [seq for seq, _ in old[:limit]]
    picked = [seq for seq, live in newest_first if live and seq not in inflight][:limit]
    chosen = set(picked)
    picked += [seq for seq, _ in old if seq not in chosen][: limit - len(picked)]
    return picked


class Buffer(Protocol):
    @property
    def epoch(self) -> int: ...

    def add(self, readings: Sequence[Reading], *, taken_ms: int, time_synced: bool) -> int: ...

    def begin(self, *, max_envelopes: int, max_readings: int) -> list[Sealed]: ...

    def end(self, accepted: Iterable[int], rejected: Iterable[int]) -> None: ...

    def chain_head(self) -> ChainHead | None:
        """Where the sealed chain ends; None only for a migrated store whose head envelope is
        gone, until the next envelope is sealed (a checkpoint must not guess)."""
        ...

    def sealed(self, seqs: Iterable[int]) -> list[Sealed]:
        """The stored envelopes starting at ``seqs`` (sent or not, byte-identical), in that
        order; those no longer stored (expired history, dropped at the cap) are left out. Does
        not touch what is in flight."""
        ...

    def recently_sent(self, *, since_ms: int, limit: int) -> list[int]:
        """Seqs of envelopes marked sent at or after ``since_ms`` (wall clock), ascending, at
        most ``limit`` (the newest)."""
        ...

    def prune_history(self, *, sent_before_ms: int) -> int:
        """Delete sent envelopes (and their cycles) acknowledged before ``sent_before_ms``, in
        small transactions; return how many cycles went."""
        ...

    def alarm(self, kind: str, message: str) -> None: ...

    def alarms(self) -> list[Alarm]: ...

    def stats(self) -> BufferStats: ...

    def close(self) -> None: ...
