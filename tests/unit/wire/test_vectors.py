"""The wire contract: our envelopes match the published vectors and any JOSE library can check them."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey, OKPKey

from nengtan.envelope import Cycle, Envelope, Reading, envelope_hash, open_envelope, seal
from nengtan.errors import EnvelopeError
from nengtan.jws import ES256Signer, VerificationKey, b64url, b64url_decode
from tests.vectors.make_envelope_vectors import build

VECTORS = json.loads((Path(__file__).parents[2] / "vectors" / "envelopes.json").read_text())


def _keys() -> dict[str, VerificationKey]:
    ed, hs = VECTORS["keys"]["ed25519"], VECTORS["keys"]["hs256"]
    return {ed["kid"]: VerificationKey(ed["kid"], "Ed25519", b64url_decode(ed["public_key"])),
            hs["kid"]: VerificationKey(hs["kid"], "HS256", b64url_decode(hs["secret"]))}


def test_the_checked_in_vectors_are_what_the_code_produces_today() -> None:
    assert build() == VECTORS, "run: python -m tests.vectors.make_envelope_vectors"


@pytest.mark.parametrize("case", VECTORS["envelopes"], ids=lambda c: f"{c['key']}-seq{c['seq']}")
def test_every_vector_opens_with_the_published_fields(case: dict[str, object]) -> None:
    envelope, _ = open_envelope(str(case["token"]), _keys())
    assert (envelope.gateway, envelope.epoch, envelope.seq, envelope.last, envelope.prev) == (
        case["gateway"], case["epoch"], case["seq"], case["last"], case["prev"])
    assert envelope.reading_count == case["readings"]
    assert envelope_hash(str(case["token"])) == case["hash"]


def test_the_chain_links_the_second_envelope_to_the_first() -> None:
    first, second = VECTORS["envelopes"][:2]
    assert second["prev"] == envelope_hash(first["token"])


def test_an_independent_jose_library_verifies_our_envelope_from_the_public_key_alone() -> None:
    ed = VECTORS["keys"]["ed25519"]
    key = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": ed["public_key"]})
    token = VECTORS["envelopes"][0]["token"]
    obj = jose_jws.deserialize_compact(token, key, algorithms=["Ed25519"])
    assert obj.headers()["alg"] == "Ed25519"
    assert json.loads(obj.payload)["gw"] == "gw-test-01"


def test_an_independent_jose_library_rejects_a_reading_altered_after_signing() -> None:
    ed = VECTORS["keys"]["ed25519"]
    key = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": ed["public_key"]})
    header, payload, signature = VECTORS["envelopes"][0]["token"].split(".")
    forged = b64url(b64url_decode(payload).replace(b"1234.625", b"1334.625"))
    with pytest.raises(Exception, match="signature"):
        jose_jws.deserialize_compact(f"{header}.{forged}.{signature}", key, algorithms=["Ed25519"])
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(f"{header}.{forged}.{signature}", _keys())
    assert caught.value.reason == "bad_signature"


def test_tokens_signed_with_the_older_eddsa_name_are_accepted() -> None:
    ed = VECTORS["keys"]["ed25519"]
    private = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": ed["public_key"],
                                 "d": ed["private_seed"]})
    payload = b64url_decode(VECTORS["envelopes"][0]["token"].split(".")[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns that EdDSA is deprecated: that is the point
        token = jose_jws.serialize_compact({"alg": "EdDSA", "kid": ed["kid"]}, payload, private,
                                           algorithms=["EdDSA"])
    envelope, compact = open_envelope(token, _keys())
    assert compact.alg == "EdDSA" and envelope.seq == 1


def test_es256_envelopes_verify_here_and_in_an_independent_library() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    signer = ES256Signer(private)
    token = seal(signer, Envelope("gw-se", 1, 1, 1, None, True, (
        Cycle(1, (Reading("m", "frequency", 1, 50.0, "good"),)),)))
    envelope, _ = open_envelope(token, {signer.kid: signer.verification_key()})
    assert envelope.gateway == "gw-se"
    numbers = private.public_key().public_numbers()
    jwk = ECKey.import_key({"kty": "EC", "crv": "P-256",
                            "x": b64url(numbers.x.to_bytes(32, "big")),
                            "y": b64url(numbers.y.to_bytes(32, "big"))})
    assert jose_jws.deserialize_compact(token, jwk, algorithms=["ES256"]).payload


@pytest.mark.parametrize("token, reason", [
    ("not a jws", "malformed"),
    ("a.b", "malformed"),
    (base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=") + ".e30.", "unsupported_alg"),
    (base64.urlsafe_b64encode(b'{"alg":"Ed25519","kid":"nobody"}').decode().rstrip("=") + ".e30.AA",
     "unknown_key"),
])
def test_defective_tokens_are_rejected_with_a_stable_reason(token: str, reason: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(token, _keys())
    assert caught.value.reason == reason


def test_an_hs256_key_cannot_verify_an_ed25519_token_even_with_the_same_kid() -> None:
    ed = VECTORS["keys"]["ed25519"]
    confused = {ed["kid"]: VerificationKey(ed["kid"], "HS256", b64url_decode(ed["public_key"]))}
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(VECTORS["envelopes"][0]["token"], confused)
    assert caught.value.reason == "bad_signature"
