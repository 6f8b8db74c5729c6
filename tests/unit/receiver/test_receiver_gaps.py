"""Missing ranges: declared gaps, checkpoints, late arrivals, and checkpoint conflicts."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from receiver_helpers import CHECKPOINT_TOPIC, GATEWAY, TOPIC, Batches, new_signer

from cloud_receiver.gaps import build_gap_report, render_gaps
from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.store import MissingRange, Store, classify_holes, open_store
from nengtan.envelope import ClockInfo, Gap

M, D = "missing", "declared"


def _ranges(store: Store, epoch: int = 1) -> list[tuple[int, int, str, str | None]]:
    return [(r.first, r.last, r.status, r.reason) for r in store.missing_ranges(GATEWAY, epoch)]


def _ingest(ingestor: Ingestor, token: str, topic: str = TOPIC) -> Status:
    outcome = ingestor.ingest(topic, token.encode())
    assert outcome.status != Status.QUARANTINED, outcome
    return outcome.status


def test_a_complete_stream_misses_nothing(ingestor: Ingestor, batches: Batches,
                                          store: Store) -> None:
    for seq in (1, 2, 4):
        _ingest(ingestor, batches.seal(seq, seq + 1 if seq == 2 else seq))
    assert _ranges(store) == []


def test_declared_gaps_and_silent_losses_are_told_apart(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1, 3))
    # The gateway dropped 4..6 at its disk cap and says so in the next envelope.
    _ingest(ingestor, batches.seal(7, 8, gaps=[Gap(4, 6, 750, "disk_cap")]))
    batches.seal(9, 10)  # sealed, published, never arrived
    _ingest(ingestor, batches.seal(11))
    assert _ranges(store) == [(4, 6, D, "disk_cap"), (9, 10, M, None)]
    assert store.gaps(GATEWAY, 1) == [Gap(4, 6, 750, "disk_cap")]


def test_a_gap_declared_only_in_part_leaves_the_rest_missing(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1))
    _ingest(ingestor, batches.seal(10, gaps=[Gap(4, 5, 2, "disk_cap"), Gap(5, 7, 3, "operator")]))
    assert _ranges(store) == [(2, 3, M, None), (4, 4, D, "disk_cap"), (5, 5, D, "disk_cap,operator"),
                              (6, 7, D, "operator"), (8, 9, M, None)]


def test_a_checkpoint_beyond_the_last_envelope_makes_the_tail_missing(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1, 2))
    batches.seal(3, 5)
    batches.seal(6)  # both lost on the way
    assert _ranges(store) == []  # without a checkpoint nobody knows
    assert _ingest(ingestor, batches.checkpoint(6), CHECKPOINT_TOPIC) == Status.ACCEPTED
    assert _ranges(store) == [(3, 6, M, None)]
    [stream] = store.streams()
    assert (stream.stored_last, stream.checkpoint_last, stream.checkpoint_sealed,
            stream.conflicts) == (2, 6, 3, 0)


def test_out_of_order_arrivals_fill_the_holes(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    first, second, third, fourth = (batches.seal(1), batches.seal(2, 3), batches.seal(4),
                                    batches.seal(5, 9))
    _ingest(ingestor, fourth)
    assert _ranges(store) == [(1, 4, M, None)]
    _ingest(ingestor, second)
    assert _ranges(store) == [(1, 1, M, None), (4, 4, M, None)]
    _ingest(ingestor, first)
    _ingest(ingestor, batches.checkpoint(9), CHECKPOINT_TOPIC)
    assert _ranges(store) == [(4, 4, M, None)]
    _ingest(ingestor, third)
    assert _ranges(store) == []


def test_epochs_are_separate_streams(ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1, 5))
    _ingest(ingestor, Batches(batches.signer).seal(3, epoch=2))  # the store was recreated
    assert _ranges(store, 1) == [] and _ranges(store, 2) == [(1, 2, M, None)]
    assert [(s.gateway, s.epoch) for s in store.streams()] == [(GATEWAY, 1), (GATEWAY, 2)]
    assert store.streams("gw-other") == []


def test_a_checkpoint_agreeing_with_the_stored_envelope_raises_nothing(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1, 4))
    outcome = ingestor.ingest(CHECKPOINT_TOPIC, batches.checkpoint(4).encode())
    assert (outcome.status, outcome.kind, outcome.alerts) == (Status.ACCEPTED, "checkpoint", 0)
    assert store.alerts(limit=10) == [] and store.streams()[0].conflicts == 0


def test_a_checkpoint_whose_head_disagrees_is_a_security_alert(
        ingestor: Ingestor, batches: Batches, store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    _ingest(ingestor, batches.seal(1, 4))
    with caplog.at_level(logging.WARNING):
        outcome = ingestor.ingest(CHECKPOINT_TOPIC, batches.checkpoint(4, head="Z" * 43).encode())
    assert outcome.status == Status.ACCEPTED and outcome.alerts == 1  # kept as evidence
    [alert] = store.alerts(limit=10)
    assert alert.kind == "checkpoint_conflict" and "Z" * 43 in alert.detail
    assert any(r.levelno == logging.ERROR and "SECURITY" in r.message for r in caplog.records)
    assert store.streams()[0].conflicts == 1


def test_a_checkpoint_ending_inside_a_stored_envelope_is_a_conflict(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1, 4))
    assert ingestor.ingest(CHECKPOINT_TOPIC, batches.checkpoint(3, head="Q" * 43,
                                                                sealed=1).encode()).alerts == 1


def test_an_envelope_contradicting_an_earlier_checkpoint_is_flagged_on_arrival(
        ingestor: Ingestor, batches: Batches, store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    _ingest(ingestor, batches.seal(1, 2))
    batches.seal(3, 5)
    _ingest(ingestor, batches.checkpoint(5), CHECKPOINT_TOPIC)  # names the genuine 3..5
    forged = Batches(batches.signer, chain={2: batches.chain[2]})
    with caplog.at_level(logging.ERROR):
        outcome = ingestor.ingest(TOPIC, forged.seal(3, 5, values=[9.0, 9.0, 9.0]).encode())
    assert outcome.status == Status.ACCEPTED and outcome.alerts == 1
    assert "SECURITY" in caplog.text and store.streams()[0].conflicts == 1


def test_a_resent_checkpoint_is_a_counted_duplicate(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1))
    token = batches.checkpoint(1)
    assert _ingest(ingestor, token, CHECKPOINT_TOPIC) == Status.ACCEPTED
    assert _ingest(ingestor, token, CHECKPOINT_TOPIC) == Status.DUPLICATE
    assert store.stats()["checkpoints"] == 1
    assert store.counters() == {"duplicate_checkpoint": 1}


def test_bad_checkpoints_are_quarantined_with_a_reason(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    batches.seal(1)
    stranger = Batches(new_signer())
    stranger.seal(1)
    cases = [
        (CHECKPOINT_TOPIC, stranger.checkpoint(1), "unknown_key"),
        (CHECKPOINT_TOPIC, batches.seal(2), "malformed"),  # a batch on the checkpoint topic
        (TOPIC, batches.checkpoint(1), "malformed"),  # a checkpoint on the batch topic
        ("nengtan/v1/gw-other/checkpoint", batches.checkpoint(1), "topic_mismatch"),
        ("nengtan/v1/gw-other/checkpoint", batches.checkpoint(1, gateway="gw-other"),
         "gateway_mismatch"),
        (CHECKPOINT_TOPIC, b"garbage".decode(), "malformed"),
    ]
    for topic, token, reason in cases:
        outcome = ingestor.ingest(topic, token.encode())
        assert (outcome.status, outcome.reason) == (Status.QUARANTINED, reason), (topic, reason)
    assert store.stats()["checkpoints"] == 0


def test_v1_envelopes_are_still_accepted_next_to_v2(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1, 2, version=1))
    _ingest(ingestor, batches.seal(3, 4))
    _ingest(ingestor, batches.seal(5, version=1))
    assert store.stats()["readings"] == 5 and _ranges(store) == []


def test_clock_info_and_the_wire_version_are_kept_per_envelope(
        tmp_path: Path, registry_dir: Path, batches: Batches) -> None:
    store = open_store(tmp_path / "r.db")
    registry = Registry(store, registry_dir)
    registry.reload()
    ingestor = Ingestor(store, registry)
    clock = ClockInfo("boot-a", 5_000, 1_748_736_100_000)
    _ingest(ingestor, batches.seal(1, clock=clock))
    _ingest(ingestor, batches.seal(2, version=1))
    store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    assert conn.execute("SELECT seq, version, boot_id, mono_ms, wall_ms FROM envelopes"
                        " ORDER BY seq").fetchall() == [
        (1, 2, "boot-a", 5_000, 1_748_736_100_000), (2, 1, None, None, None)]
    conn.close()


@pytest.mark.parametrize(("holes", "gaps", "expected"), [
    ([], [Gap(1, 5, 1, "x")], []),
    ([(1, 10)], [], [MissingRange(1, 10, M)]),
    ([(3, 8)], [Gap(1, 20, 1, "x")], [MissingRange(3, 8, D, "x")]),
    ([(3, 8)], [Gap(1, 4, 1, "x"), Gap(7, 7, 1, "x")],
     [MissingRange(3, 4, D, "x"), MissingRange(5, 6, M), MissingRange(7, 7, D, "x"),
      MissingRange(8, 8, M)]),
    ([(3, 8)], [Gap(3, 5, 1, "x"), Gap(6, 8, 1, "x")], [MissingRange(3, 8, D, "x")]),
    ([(1, 2), (5, 6)], [Gap(2, 5, 1, "y")],
     [MissingRange(1, 1, M), MissingRange(2, 2, D, "y"), MissingRange(5, 5, D, "y"),
      MissingRange(6, 6, M)]),
])
def test_classify_holes(holes: list[tuple[int, int]], gaps: list[Gap],
                        expected: list[MissingRange]) -> None:
    assert classify_holes(holes, gaps) == expected


def test_the_gap_report_lists_every_stream_with_its_ranges_and_alerts(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    _ingest(ingestor, batches.seal(1, 2))
    _ingest(ingestor, batches.seal(6, gaps=[Gap(3, 4, 20, "disk_cap")]))
    batches.seal(7, 9)
    _ingest(ingestor, batches.checkpoint(9), CHECKPOINT_TOPIC)
    _ingest(ingestor, batches.checkpoint(2, head="X" * 43, sealed=1), CHECKPOINT_TOPIC)
    report = build_gap_report(store)
    [stream] = report.streams
    assert (stream.missing, stream.declared) == (4, 2)
    data = report.as_dict()
    assert data["streams"][0]["ranges"] == [  # type: ignore[index]
        {"first": 3, "last": 4, "cycles": 2, "status": "declared", "reason": "disk_cap"},
        {"first": 5, "last": 5, "cycles": 1, "status": "missing", "reason": None},
        {"first": 7, "last": 9, "cycles": 3, "status": "missing", "reason": None}]
    text = render_gaps(report)
    assert "3..4 (2 cycle(s)) declared by the gateway: disk_cap" in text
    assert "7..9 (3 cycle(s)) missing" in text and "checkpoint_conflict" in text
    assert build_gap_report(store, "gw-none").streams == ()
