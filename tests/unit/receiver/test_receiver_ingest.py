"""Ingest: verify, chain, deduplicate, quarantine — on real signed envelopes, no sockets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pytest_mock import MockerFixture
from receiver_helpers import GATEWAY, TOPIC, Batches, deflate, enrollment_record, new_signer

from cloud_receiver.ingest import Ingestor, Status, topic_gateway
from cloud_receiver.registry import Registry
from cloud_receiver.store import Store
from nengtan.envelope import inflate
from nengtan.errors import StoreError
from nengtan.jws import b64url, b64url_decode


def test_a_valid_envelope_is_accepted_and_its_readings_stored(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    outcome = ingestor.ingest(TOPIC, batches.seal(1, 3).encode())
    assert (outcome.status, outcome.gateway, outcome.seq, outcome.readings) == (
        Status.ACCEPTED, GATEWAY, 1, 3)
    assert store.stats()["envelopes"] == 1
    assert store.stats()["readings"] == 3
    assert store.stats()["quarantine"] == 0


@pytest.mark.parametrize("version", [1, 2])
def test_a_reading_altered_after_signing_is_quarantined_as_bad_signature(
        ingestor: Ingestor, batches: Batches, store: Store, version: int) -> None:
    header, payload, signature = batches.seal(1, values=[100.5], version=version).split(".")
    raw = b64url_decode(payload)
    if version == 1:
        altered = raw.replace(b"100.5", b"900.5")
    else:  # re-deflate the altered document, as a forger would
        document = inflate(raw)
        assert b"100.5" in document
        altered = deflate(document.replace(b"100.5", b"900.5"))
    assert altered != raw
    token = ".".join([header, b64url(altered), signature]).encode()

    outcome = ingestor.ingest(TOPIC, token)

    assert (outcome.status, outcome.reason) == (Status.QUARANTINED, "bad_signature")
    assert store.stats()["readings"] == 0
    [kept] = store.quarantined(limit=10)
    assert kept.payload == token  # the raw bytes, as evidence


def test_an_unknown_key_is_quarantined(ingestor: Ingestor, store: Store) -> None:
    stranger = Batches(new_signer())
    outcome = ingestor.ingest(TOPIC, stranger.seal(1).encode())
    assert outcome.reason == "unknown_key"
    assert store.quarantine_counts() == {"unknown_key": 1}


def test_a_gateway_enrolled_after_start_is_found_by_reloading_the_directory(
        store: Store, registry_dir: Path) -> None:
    clock = [1000.0]
    registry = Registry(store, registry_dir, clock=lambda: clock[0])
    registry.reload()
    ingestor = Ingestor(store, registry)
    late = Batches(new_signer(), gateway="gw-late")
    record = enrollment_record(late.signer, "gw-late")
    (registry_dir / "gw-late.json").write_text(json.dumps(record))

    # Just reloaded at startup: the rate limit holds the rescan back, so the kid is unknown.
    assert ingestor.ingest("nengtan/v1/gw-late/batch", late.seal(1).encode()).reason == "unknown_key"
    clock[0] += 5.0
    outcome = ingestor.ingest("nengtan/v1/gw-late/batch", late.seal(2).encode())
    assert outcome.status == Status.ACCEPTED


def test_a_kid_enrolled_for_another_gateway_is_a_gateway_mismatch(
        ingestor: Ingestor, batches: Batches) -> None:
    token = batches.seal(1, gateway="gw-other")  # our key, but claiming to be someone else
    outcome = ingestor.ingest("nengtan/v1/gw-other/batch", token.encode())
    assert outcome.reason == "gateway_mismatch"


def test_an_envelope_on_another_gateways_topic_is_a_topic_mismatch(
        ingestor: Ingestor, batches: Batches) -> None:
    outcome = ingestor.ingest("nengtan/v1/gw-other/batch", batches.seal(1).encode())
    assert outcome.reason == "topic_mismatch"


@pytest.mark.parametrize("payload", [b"", b"hello", b"a.b.c", b"\xff\xfe", b"{}..", b"x" * 5000])
def test_malformed_bytes_are_quarantined_as_malformed(
        ingestor: Ingestor, store: Store, payload: bytes) -> None:
    outcome = ingestor.ingest(TOPIC, payload)
    assert (outcome.status, outcome.reason) == (Status.QUARANTINED, "malformed")
    assert store.quarantined(limit=1)[0].payload == payload


def test_a_duplicate_delivery_is_stored_once_and_counted(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    token = batches.seal(1, 2).encode()
    assert ingestor.ingest(TOPIC, token).status == Status.ACCEPTED
    assert ingestor.ingest(TOPIC, token).status == Status.DUPLICATE
    assert ingestor.ingest(TOPIC, token).status == Status.DUPLICATE
    assert store.stats()["envelopes"] == 1
    assert store.stats()["readings"] == 2
    assert store.stats()["quarantine"] == 0
    assert store.counters() == {"duplicate": 2}


def test_the_same_seq_with_different_content_is_a_replay_conflict_and_alerts(
        ingestor: Ingestor, batches: Batches, store: Store,
        caplog: pytest.LogCaptureFixture) -> None:
    ingestor.ingest(TOPIC, batches.seal(1, values=[100.0]).encode())
    with caplog.at_level(logging.WARNING):
        outcome = ingestor.ingest(TOPIC, batches.seal(1, values=[50.0]).encode())
    assert outcome.reason == "replay_conflict"
    assert any(r.levelno >= logging.ERROR and "SECURITY" in r.message for r in caplog.records)
    assert [s.value for s in store.counter_samples("active_energy_import")] == [100.0]


def test_an_envelope_overlapping_stored_cycles_is_a_replay_conflict(
        ingestor: Ingestor, batches: Batches) -> None:
    ingestor.ingest(TOPIC, batches.seal(1, 3).encode())
    assert ingestor.ingest(TOPIC, batches.seal(2, 4).encode()).reason == "replay_conflict"


def test_a_prev_that_does_not_match_the_stored_predecessor_is_a_chain_break(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    ingestor.ingest(TOPIC, batches.seal(1, 2).encode())
    outcome = ingestor.ingest(TOPIC, batches.seal(3, prev="A" * 43).encode())
    assert outcome.reason == "chain_break"
    assert store.stats()["envelopes"] == 1


def test_a_stored_successor_whose_prev_is_not_this_hash_is_a_chain_break(
        ingestor: Ingestor, batches: Batches) -> None:
    batches.seal(1)
    ingestor.ingest(TOPIC, batches.seal(2).encode())  # links to the first version of seq 1
    forged_first = batches.seal(1, values=[7.0])  # a different envelope for seq 1
    assert ingestor.ingest(TOPIC, forged_first.encode()).reason == "chain_break"


def test_late_and_out_of_order_envelopes_are_accepted(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    tokens = [batches.seal(1, 2), batches.seal(3), batches.seal(4, 6)]
    for token in (tokens[2], tokens[0], tokens[1]):
        assert ingestor.ingest(TOPIC, token.encode()).status == Status.ACCEPTED
    assert store.stats()["readings"] == 6


def test_readings_of_quality_bad_are_stored_with_a_null_value(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    outcome = ingestor.ingest(TOPIC, batches.seal(1, 2, values=[100.0, None]).encode())
    assert outcome.readings == 2
    assert [s.value for s in store.counter_samples("active_energy_import")] == [100.0]


def test_an_unexpected_exception_is_quarantined_as_internal(
        ingestor: Ingestor, batches: Batches, store: Store, mocker: MockerFixture) -> None:
    mocker.patch("cloud_receiver.ingest.open_batch",
                 side_effect=RuntimeError("decoder exploded"))
    outcome = ingestor.ingest(TOPIC, batches.seal(1).encode())
    assert (outcome.reason, outcome.detail) == ("internal", "RuntimeError: decoder exploded")
    assert store.stats()["quarantine"] == 1


def test_a_database_failure_raises_so_the_message_is_not_acknowledged(
        ingestor: Ingestor, batches: Batches, store: Store) -> None:
    store.close()
    with pytest.raises(StoreError):
        ingestor.ingest(TOPIC, batches.seal(1).encode())


@pytest.mark.parametrize(("topic", "gateway"), [
    ("nengtan/v1/gw-1/batch", "gw-1"), ("nengtan/v1/gw-1/other", None),
    ("nengtan/v1/batch", None), ("other/gw-1/batch", None), ("nengtan/v1/a/b/batch", None),
    ("nengtan/v1//batch", None),
])
def test_the_gateway_is_read_from_the_topic(topic: str, gateway: str | None) -> None:
    assert topic_gateway(topic, "nengtan/v1") == gateway


@pytest.mark.parametrize("mangle", [
    lambda sig: sig[:5] + "!!!!" + sig[5:],  # b64url_decode skips characters outside the alphabet
    lambda sig: sig[:-1] + {"A": "B", "Q": "R", "g": "h", "w": "x"}[sig[-1]],  # padding bits
])
def test_a_re_spelled_but_still_verifying_token_is_malformed_not_stored(
        ingestor: Ingestor, batches: Batches, store: Store, mangle: object) -> None:
    header, payload, signature = batches.seal(1).split(".")
    token = ".".join([header, payload, mangle(signature)])  # type: ignore[operator]
    assert ingestor.ingest(TOPIC, token.encode()).reason == "malformed"
    assert store.stats()["envelopes"] == 0


def test_the_first_envelope_of_an_epoch_must_not_claim_a_predecessor(
        ingestor: Ingestor, batches: Batches) -> None:
    assert ingestor.ingest(TOPIC, batches.seal(1, prev="A" * 43).encode()).reason == "chain_break"
