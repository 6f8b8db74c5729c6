"""Property: whatever arrives on the wire, ingest answers with an Outcome and keeps the bytes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from receiver_helpers import GATEWAY, TOPIC, Batches, new_signer

from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.store import EnrolledKey, open_store
from nengtan.jws import b64url

SIGNER = new_signer()
# Function-scoped fixtures do not reset between hypothesis examples, so build the world once:
# the key goes straight into the store, and the (absent) directory is never rescanned.
STORE = open_store(":memory:")
STORE.add_key(EnrolledKey(SIGNER.kid, GATEWAY, "Ed25519", SIGNER.public_bytes, "2025-05-30", "-"))
_REGISTRY = Registry(STORE, Path("/nonexistent/registry"), min_reload_interval_s=3600.0)
_REGISTRY.reload_if_due()
INGESTOR = Ingestor(STORE, _REGISTRY)

# Parts that look like a JWS get further into the pipeline than random bytes do.
_part = st.one_of(st.binary(max_size=64).map(b64url), st.sampled_from(
    [b64url(b'{"alg":"Ed25519","kid":"' + SIGNER.kid.encode() + b'"}'),
     b64url(b'{"alg":"none"}'), b64url(b'{"alg":"HS256","kid":"x","crit":["b64"]}')]))
_jws_like = st.tuples(_part, _part, _part).map(lambda p: ".".join(p).encode())


# Surrogates included: a topic that is not valid UTF-8 is repr()'d by the subscriber, but the
# ingest API takes any str.
_topics = st.text(st.characters(blacklist_categories=()), max_size=80)


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=2048), _jws_like), topic=_topics)
def test_arbitrary_bytes_never_raise_and_are_always_quarantined(payload: bytes, topic: str) -> None:
    before = sum(STORE.quarantine_counts().values())
    outcome = INGESTOR.ingest(topic, payload)
    assert outcome.status == Status.QUARANTINED
    assert outcome.reason is not None and outcome.reason != "internal"
    assert sum(STORE.quarantine_counts().values()) == before + 1
    assert STORE.stats()["envelopes"] == 0


@settings(max_examples=50, deadline=None)
@given(topic=_topics.filter(lambda t: t != TOPIC))
def test_a_valid_envelope_on_any_wrong_topic_is_quarantined_not_raised(topic: str) -> None:
    outcome = INGESTOR.ingest(topic, Batches(SIGNER).seal(1).encode())
    assert outcome.reason == "topic_mismatch"
