"""ES256 signatures have one spelling: the signer emits low-s, the verifier refuses high-s."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from nengtan.jws import P256_HALF_ORDER, P256_ORDER, ES256Signer


def test_the_signer_always_emits_low_s_and_the_high_s_twin_does_not_verify() -> None:
    signer = ES256Signer(ec.generate_private_key(ec.SECP256R1()))
    key = signer.verification_key()
    # About half of raw ECDSA signatures are high-s, so 40 tries all but surely include some
    # the signer had to normalise.
    for i in range(40):
        message = f"input {i}".encode()
        signature = signer.sign(message)
        r, s = signature[:32], int.from_bytes(signature[32:], "big")
        assert s <= P256_HALF_ORDER
        assert key.verify("ES256", message, signature)
        twin = r + (P256_ORDER - s).to_bytes(32, "big")
        assert not key.verify("ES256", message, twin)
