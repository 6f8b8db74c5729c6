"""Property: whatever arrives on the wire, ingest answers with an Outcome and keeps the bytes."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receiver_helpers import CHECKPOINT_TOPIC, GATEWAY, TOPIC, Batches, new_signer

from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.store import EnrolledKey, Store
from nengtan.checkpoint import CHECKPOINT_MEDIA_TYPE
from nengtan.envelope import MEDIA_TYPE_V1, MEDIA_TYPE_V2
from nengtan.jws import b64url, sign_compact
from tests.integration.receiver.pg_helpers import BACKENDS, backend_store

SIGNER = new_signer()


@dataclass
class World:
    store: Store
    ingestor: Ingestor


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """Function-scoped fixtures do not reset between hypothesis examples, so the world is built
    once per backend: the key goes straight into the store, and the (absent) directory is never
    rescanned. On PostgreSQL every quarantine write is a real INSERT (bytea, text with any
    character the fuzzer finds), which is where a backend could crash on what SQLite takes."""
    with backend_store(request.param) as store:
        store.add_key(EnrolledKey(SIGNER.kid, GATEWAY, "Ed25519", SIGNER.public_bytes,
                                  "2025-05-30", "-"))
        registry = Registry(store, Path("/nonexistent/registry"), min_reload_interval_s=3600.0)
        registry.reload_if_due()
        yield World(store, Ingestor(store, registry))


# Parts that look like a JWS get further into the pipeline than random bytes do.
_part = st.one_of(st.binary(max_size=64).map(b64url), st.sampled_from(
    [b64url(b'{"alg":"Ed25519","kid":"' + SIGNER.kid.encode() + b'"}'),
     b64url(b'{"alg":"none"}'), b64url(b'{"alg":"HS256","kid":"x","crit":["b64"]}')]))
_jws_like = st.tuples(_part, _part, _part).map(lambda p: ".".join(p).encode())


# Surrogates included: a topic that is not valid UTF-8 is repr()'d by the subscriber, but the
# ingest API takes any str.
_topics = st.text(st.characters(blacklist_categories=()), max_size=80)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=2048), _jws_like),
       topic=_topics | st.sampled_from([TOPIC, CHECKPOINT_TOPIC]))
def test_arbitrary_bytes_never_raise_and_are_always_quarantined(
        world: World, payload: bytes, topic: str) -> None:
    before = sum(world.store.quarantine_counts().values())
    outcome = world.ingestor.ingest(topic, payload)
    assert outcome.status == Status.QUARANTINED
    assert outcome.reason is not None and outcome.reason != "internal"
    assert sum(world.store.quarantine_counts().values()) == before + 1
    assert world.store.stats()["envelopes"] == 0


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50, deadline=None)
@given(topic=_topics.filter(lambda t: t != TOPIC))
def test_a_valid_envelope_on_any_wrong_topic_is_quarantined_not_raised(
        world: World, topic: str) -> None:
    outcome = world.ingestor.ingest(topic, Batches(SIGNER).seal(1).encode())
    assert outcome.reason == "topic_mismatch"


def _deflated(data: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    return deflater.compress(data) + deflater.flush()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(
        ["v", "gw", "epoch", "seq", "last", "prev", "synced", "series", "cycles", "gaps",
         "clock", "head", "sealed"]), inner, max_size=8),
    max_leaves=30,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200, deadline=None)
@given(content=st.one_of(st.binary(max_size=1024).map(lambda b: (b, False)),
                         _json.map(lambda d: (json.dumps(d).encode(), True))),
       typ=st.sampled_from([MEDIA_TYPE_V2, MEDIA_TYPE_V1, CHECKPOINT_MEDIA_TYPE]))
def test_validly_signed_nonsense_is_bad_payload_never_internal(
        world: World, content: tuple[bytes, bool], typ: str) -> None:
    """What a holder of the key (or a bug in a producer) can sign still cannot crash ingest."""
    raw, is_json = content
    payload = _deflated(raw) if typ == MEDIA_TYPE_V2 and is_json else raw
    token = sign_compact(SIGNER, {"typ": typ}, payload).encode()
    topic = CHECKPOINT_TOPIC if typ == CHECKPOINT_MEDIA_TYPE else TOPIC
    outcome = world.ingestor.ingest(topic, token)
    assert (outcome.status, outcome.reason) == (Status.QUARANTINED, "bad_payload")
