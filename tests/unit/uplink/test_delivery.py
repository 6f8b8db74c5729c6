"""The delivery decisions with no socket: when an envelope is sent again in one_way mode, and
when a checkpoint is due and what it says."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.buffer import ChainHead
from agent.outputs.mqtt.delivery import Checkpoints, Resender
from nengtan.checkpoint import Checkpoint, open_checkpoint, seal_checkpoint
from nengtan.envelope import ClockInfo
from nengtan.jws import Ed25519Signer

SIGNER = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
KEYS = {SIGNER.kid: SIGNER.verification_key()}
HEAD = "A" * 43


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _resender(redundancy: int = 3, delay_s: float = 30.0, **kwargs: int) -> tuple[Resender, Clock]:
    clock = Clock()
    return Resender(redundancy=redundancy, delay_s=delay_s, monotonic=clock, **kwargs), clock


def test_each_envelope_goes_out_redundancy_times_in_all_delay_apart() -> None:
    resender, clock = _resender(redundancy=3, delay_s=30)
    resender.sent([1, 2])  # the first sends were written now
    assert resender.due(10) == []
    clock.now += 29.9
    assert resender.due(10) == []
    clock.now += 0.1
    assert resender.due(10) == [1, 2]
    assert resender.due(10) == []  # handed out once until the uplink says what became of them
    resender.copied([1, 2])
    clock.now += 30
    assert resender.due(10) == [1, 2]
    resender.copied([1, 2])
    clock.now += 3600
    assert resender.due(10) == [] and resender.pending == 0
    assert resender.copies_sent == 4  # 2 envelopes × (3 sends - the first)


def test_the_spacing_counts_from_when_the_previous_copy_left() -> None:
    resender, clock = _resender(redundancy=3, delay_s=10)
    resender.sent([1])
    clock.now += 25  # the loop was busy: the copy goes late ...
    assert resender.due(10) == [1]
    clock.now += 5
    resender.copied([1])
    clock.now += 9
    assert resender.due(10) == []  # ... and the next one keeps its distance from it
    clock.now += 1
    assert resender.due(10) == [1]


def test_redundancy_one_sends_no_copies() -> None:
    resender, clock = _resender(redundancy=1)
    resender.sent([1, 2, 3])
    clock.now += 1e6
    assert resender.due(10) == [] and resender.pending == 0 and resender.window_s == 0


def test_a_copy_that_never_left_is_due_again_at_once_and_still_counts_once() -> None:
    resender, clock = _resender(redundancy=2, delay_s=30)
    resender.sent([1, 2])
    clock.now += 30
    assert resender.due(10) == [1, 2]
    resender.copied([2])
    resender.lost([1])  # the link died before it was written
    assert resender.due(10) == [1]
    resender.copied([1])
    clock.now += 1e6
    assert resender.due(10) == [] and resender.pending == 0


def test_due_respects_the_window_and_keeps_the_rest_in_order() -> None:
    resender, clock = _resender(redundancy=2, delay_s=1)
    resender.sent(range(1, 8))
    clock.now += 1
    assert resender.due(3) == [1, 2, 3]
    assert resender.due(0) == []
    assert resender.due(3) == [4, 5, 6]
    resender.lost([2])
    assert resender.due(3) == [2, 7]


def test_envelopes_gone_from_the_buffer_are_given_up_and_counted() -> None:
    resender, clock = _resender(redundancy=3, delay_s=1)
    resender.sent([1, 2])
    clock.now += 1
    assert resender.due(5) == [1, 2]
    resender.forget([1])  # history expired or dropped at the cap meanwhile
    resender.copied([2])
    clock.now += 1
    assert resender.due(5) == [2]
    assert resender.given_up == 2  # envelope 1's two copies


def test_a_clean_stop_makes_every_copy_due_at_once() -> None:
    resender, clock = _resender(redundancy=3, delay_s=30)
    resender.sent([1, 2])
    clock.now += 30
    assert resender.due(1) == [1]
    resender.flush()
    assert resender.due(10) == [2]  # 1 is still out
    resender.copied([1, 2])
    assert resender.due(10) == [1, 2]  # their last copies, without waiting 30 s
    resender.copied([1, 2])
    assert resender.pending == 0


def test_the_schedule_is_bounded_and_the_oldest_debts_go_first() -> None:
    resender, clock = _resender(redundancy=2, delay_s=1, max_pending=3)
    resender.sent([1, 2, 3, 4, 5])
    assert resender.pending == 3 and resender.given_up == 2
    clock.now += 1
    assert resender.due(10) == [3, 4, 5]


def test_a_seq_already_owed_is_not_scheduled_twice() -> None:
    resender, clock = _resender(redundancy=2, delay_s=1)
    resender.sent([1])
    resender.sent([1])
    clock.now += 1
    assert resender.due(10) == [1]


def _checkpoints(every_s: float = 300) -> tuple[Checkpoints, Clock, list[Checkpoint]]:
    clock, signed = Clock(), list[Checkpoint]()

    def sign(checkpoint: Checkpoint) -> str:
        signed.append(checkpoint)
        return seal_checkpoint(SIGNER, checkpoint)

    cps = Checkpoints(gateway="gw-01", sign=sign, every_s=every_s,
                      clock=lambda: ClockInfo("boot", 5_000, 1_763_769_600_000), monotonic=clock)
    return cps, clock, signed


def test_a_checkpoint_is_due_at_once_then_every_period_and_after_every_new_connection() -> None:
    cps, clock, _ = _checkpoints(every_s=300)
    assert cps.due(session=1)
    cps.done(session=1)
    assert not cps.due(session=1)
    clock.now += 299
    assert not cps.due(session=1)
    assert cps.due(session=2)  # a reconnect
    cps.done(session=2)
    clock.now += 300
    assert cps.due(session=2)
    assert cps.published == 2


def test_the_token_states_the_chain_head_and_is_only_re_signed_when_it_moves() -> None:
    cps, _, signed = _checkpoints()
    first = cps.token(3, ChainHead(17, HEAD, 9))
    assert cps.token(3, ChainHead(17, HEAD, 9)) == first  # a repeat: the receiver dedupes it
    checkpoint, _ = open_checkpoint(first, KEYS)
    assert (checkpoint.gateway, checkpoint.epoch, checkpoint.last, checkpoint.head,
            checkpoint.sealed) == ("gw-01", 3, 17, HEAD, 9)
    assert checkpoint.clock == ClockInfo("boot", 5_000, 1_763_769_600_000)
    moved = cps.token(3, ChainHead(18, "B" * 43, 10))
    assert moved != first and len(signed) == 2


def test_nothing_sealed_yet_is_a_valid_checkpoint() -> None:
    cps, _, _ = _checkpoints()
    checkpoint, _ = open_checkpoint(cps.token(1, ChainHead(0, None, 0)), KEYS)
    assert (checkpoint.last, checkpoint.head, checkpoint.sealed) == (0, None, 0)


def test_an_unknown_head_postpones_without_spinning() -> None:
    cps, clock, _ = _checkpoints(every_s=60)
    cps.postpone(session=1)
    assert not cps.due(session=1)
    clock.now += 60
    assert cps.due(session=1)
