"""Signed checkpoints: round trip, strict payload checks, and no confusion with envelopes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from nengtan.checkpoint import (
    CHECKPOINT_MEDIA_TYPE,
    Checkpoint,
    encode_checkpoint,
    open_checkpoint,
    seal_checkpoint,
)
from nengtan.envelope import ClockInfo, Cycle, Envelope, Reading, open_envelope, seal
from nengtan.errors import EnvelopeError
from nengtan.jws import Ed25519Signer, parse_compact, sign_compact

SIGNER = Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))
KEYS = {SIGNER.kid: SIGNER.verification_key()}
CHECKPOINT = Checkpoint("gw-1", 2, 812, "B" * 43, 41, ClockInfo("boot-1", 9_000, 1_763_769_600_000))


def test_a_checkpoint_round_trips_and_says_what_it_is() -> None:
    token = seal_checkpoint(SIGNER, CHECKPOINT)
    assert parse_compact(token).header["typ"] == CHECKPOINT_MEDIA_TYPE
    checkpoint, compact = open_checkpoint(token, KEYS)
    assert checkpoint == CHECKPOINT and compact.kid == SIGNER.kid
    assert json.loads(encode_checkpoint(CHECKPOINT)) == {
        "v": 1, "gw": "gw-1", "epoch": 2, "last": 812, "head": "B" * 43, "sealed": 41,
        "clock": {"boot_id": "boot-1", "mono_ms": 9_000, "wall_ms": 1_763_769_600_000}}


def test_an_empty_epoch_and_a_missing_clock_are_allowed() -> None:
    empty = Checkpoint("gw-1", 3, 0, None, 0)
    assert open_checkpoint(seal_checkpoint(SIGNER, empty), KEYS)[0] == empty


def test_an_envelope_is_not_a_checkpoint_and_a_checkpoint_is_not_an_envelope() -> None:
    envelope = seal(SIGNER, Envelope("gw-1", 1, 1, 1, None, True, (
        Cycle(1, (Reading("m", "frequency", 1, 50.0, "good"),)),)))
    with pytest.raises(EnvelopeError) as caught:
        open_checkpoint(envelope, KEYS)
    assert caught.value.reason == "malformed"
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(seal_checkpoint(SIGNER, CHECKPOINT), KEYS)
    assert caught.value.reason == "malformed"


def test_a_checkpoint_from_an_unknown_key_or_altered_is_rejected() -> None:
    stranger = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(EnvelopeError) as caught:
        open_checkpoint(seal_checkpoint(stranger, CHECKPOINT), KEYS)
    assert caught.value.reason == "unknown_key"
    header, _, signature = seal_checkpoint(SIGNER, CHECKPOINT).split(".")
    _, payload, _ = seal_checkpoint(SIGNER, Checkpoint("gw-1", 2, 900, "B" * 43, 41)).split(".")
    with pytest.raises(EnvelopeError) as caught:
        open_checkpoint(f"{header}.{payload}.{signature}", KEYS)
    assert caught.value.reason == "bad_signature"


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode_checkpoint(CHECKPOINT))
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


@pytest.mark.parametrize("body", [
    _body(v=2), _body(v=True), _body(gw="a/b"), _body(epoch=0), _body(last=-1),
    _body(last=2**53), _body(head=None), _body(head="short"), _body(sealed=0),
    _body(sealed=813), _body(sealed=...), _body(last=0), _body(last=0, head=None, sealed=1),
    _body(clock={"boot_id": "b"}), _body(clock="now"), [1, 2], "checkpoint",
], ids=repr)
def test_a_checkpoint_breaking_the_contract_is_bad_payload(body: object) -> None:
    token = sign_compact(SIGNER, {"typ": CHECKPOINT_MEDIA_TYPE}, json.dumps(body).encode())
    with pytest.raises(EnvelopeError) as caught:
        open_checkpoint(token, KEYS)
    assert caught.value.reason == "bad_payload"
