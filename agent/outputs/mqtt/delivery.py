"""What the agent loop decides about delivery, apart from any socket: when to publish a signed
checkpoint, and (in one_way mode) when to send an envelope again.

Checkpoints (both modes): every ``checkpoint_every_s`` and after every new connection the agent
publishes the chain head (last sealed cycle, hash of the envelope ending there, envelopes sealed
so far), signed with the envelope key. The token is signed again only when the chain has moved,
so a repeat is byte-identical: the receiver counts it as a duplicate instead of storing it again.

Resends (one_way mode): across a data diode no acknowledgement says anything about the far side,
so every envelope is sent ``redundancy`` times in all, each copy ``delay_s`` after the previous
one left, and loss that hits every copy is left to the checkpoints (the far side lists what it
lacks) and to a technician's ``nengtan agent export``. Only sequence numbers are kept here; the
tokens stay in the buffer and are read again when a copy is due.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from agent.buffer import ChainHead, ClockSource
from nengtan.checkpoint import Checkpoint

log = logging.getLogger(__name__)

MAX_PENDING = 200_000  # envelopes owed a copy, at most (a few MB of RAM); beyond, the oldest go


class Resender:
    """The copies still owed, in the order they fall due. Driven by the agent loop, one thread.

    ``sent`` (the first send of an envelope was written to the socket) schedules its first copy;
    ``due`` hands out the copies whose time has come; ``copied`` (that copy was written)
    schedules the next one, ``lost`` (the connection ended before it was written) makes it due
    again at once. The schedule lives in RAM: after a restart the agent schedules the envelopes
    it sent shortly before again (``Agent.run``), and checkpoints reveal any envelope that still
    never arrived.
    """

    def __init__(self, *, redundancy: int, delay_s: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 max_pending: int = MAX_PENDING) -> None:
        if redundancy < 1 or delay_s < 0:
            raise ValueError("redundancy must be >= 1 and delay_s >= 0")
        self._copies, self._delay, self._now = redundancy - 1, delay_s, monotonic
        self._max = max_pending
        self._owed: dict[int, int] = {}  # seq -> copies still to send, the scheduled one included
        self._queue: deque[tuple[float, int]] = deque()  # (due, seq), due ascending
        self._out: set[int] = set()  # handed out by due(), neither copied nor lost yet
        self.copies_sent = 0
        self.given_up = 0  # copies never sent: schedule over max_pending, or history gone

    @property
    def redundancy(self) -> int:
        return self._copies + 1

    @property
    def window_s(self) -> float:
        """How long after its first send an envelope may still be owed a copy."""
        return self._copies * self._delay

    @property
    def pending(self) -> int:
        """Envelopes that are still owed at least one copy."""
        return len(self._owed)

    def sent(self, seqs: Iterable[int]) -> None:
        if self._copies <= 0:
            return
        due = self._now() + self._delay
        for seq in seqs:
            if seq not in self._owed:
                self._owed[seq] = self._copies
                self._queue.append((due, seq))
        self._trim()

    def copied(self, seqs: Iterable[int]) -> None:
        due = self._now() + self._delay
        for seq in seqs:
            self._out.discard(seq)
            self.copies_sent += 1
            owed = self._owed.get(seq)
            if owed is None:
                continue
            if owed <= 1:
                del self._owed[seq]
            else:
                self._owed[seq] = owed - 1
                self._queue.append((due, seq))

    def lost(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self._out.discard(seq)
            if seq in self._owed:
                self._queue.appendleft((0.0, seq))  # 0.0 keeps the queue in due order

    def forget(self, seqs: Iterable[int]) -> None:
        """The buffer no longer holds these envelopes (history expired or dropped at the cap)."""
        for seq in seqs:
            self._out.discard(seq)
            self.given_up += self._owed.pop(seq, 0)

    def due(self, limit: int) -> list[int]:
        """Up to ``limit`` envelopes whose next copy is due, oldest due first."""
        now, picked = self._now(), list[int]()
        while self._queue and len(picked) < limit and self._queue[0][0] <= now:
            _, seq = self._queue.popleft()
            if seq in self._owed and seq not in self._out:
                picked.append(seq)
                self._out.add(seq)
        return picked

    def flush(self) -> None:
        """A clean stop: every copy still owed is due now, with no spacing, rather than never."""
        self._delay = 0.0
        self._queue = deque((0.0, seq) for seq in sorted(self._owed) if seq not in self._out)

    def _trim(self) -> None:
        dropped = 0
        while len(self._owed) > self._max and self._queue:
            _, seq = self._queue.popleft()
            if seq in self._owed and seq not in self._out:
                dropped += self._owed.pop(seq)
        if dropped:
            self.given_up += dropped
            log.warning("one_way: %d envelope copies given up: more than %d envelopes were owed "
                        "a copy (the checkpoints still show anything lost)", dropped, self._max)


class Checkpoints:
    """When a checkpoint is due, and its token."""

    def __init__(self, *, gateway: str, sign: Callable[[Checkpoint], str], every_s: float,
                 clock: ClockSource, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._gateway, self._sign, self._every = gateway, sign, every_s
        self._clock, self._now = clock, monotonic
        self._next = 0.0  # due at once
        self._session = -1  # the connection the last one went out on
        self._cached: tuple[tuple[int, int, str | None, int], str] | None = None
        self.published = 0

    def due(self, session: int) -> bool:
        return session != self._session or self._now() >= self._next

    def token(self, epoch: int, head: ChainHead) -> str:
        """The signed checkpoint for ``head``; the same token while the chain has not moved."""
        key = (epoch, head.last, head.head, head.sealed)
        if self._cached is None or self._cached[0] != key:
            checkpoint = Checkpoint(self._gateway, epoch, head.last, head.head, head.sealed,
                                    self._clock())
            self._cached = (key, self._sign(checkpoint))
        return self._cached[1]

    def done(self, session: int) -> None:
        """One went out on connection ``session``; the next is due ``every_s`` from now."""
        self._session, self._next = session, self._now() + self._every
        self.published += 1

    def postpone(self, session: int) -> None:
        """Nothing could be said (the chain head is unknown): try again in ``every_s``."""
        self._session, self._next = session, self._now() + self._every
