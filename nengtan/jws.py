"""JWS compact serialization (RFC 7515) with a small, agile set of algorithms.

Why our own 100 lines instead of a JOSE library in production: the envelope format is fixed
(compact, one signature, no JWE, no "crit"), the hot path verifies tens of thousands of envelopes
a second, and the MicroPython nodes must produce the same bytes. The primitives all come from
``cryptography``; a test verifies our output with an independent JOSE library.

Algorithms: ``Ed25519`` (RFC 9864, the default), ``EdDSA`` (RFC 8037's older name, accepted on
input only), ``ES256`` (P-256, for secure elements) and ``HS256`` (shared secret, for MicroPython
nodes that cannot do public-key signatures fast enough).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from nengtan.errors import EnvelopeError, IdentityError

SIGNING_ALGORITHMS = ("Ed25519", "ES256", "HS256")
#: The order n of the P-256 group; ES256 signatures must have s <= n / 2 (low-s, as in BIP 62).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_HALF_ORDER = P256_ORDER // 2
#: EdDSA is RFC 8037's polymorphic name; RFC 9864 deprecates it in favour of Ed25519.
ACCEPTED_ALGORITHMS = (*SIGNING_ALGORITHMS, "EdDSA")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url, accepting only the one spelling an encoder produces.

    Lenient decoders skip foreign characters and ignore non-zero padding bits, so one signed
    token could travel as many byte strings with many chain hashes; we refuse all but one.
    Raise ValueError otherwise.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("non-canonical base64url (padding bits set)")
    return data


class Signer(Protocol):
    alg: str
    kid: str

    def sign(self, signing_input: bytes) -> bytes: ...


@dataclass(frozen=True)
class VerificationKey:
    """What the receiver knows about one enrolled key."""

    kid: str
    alg: str
    material: bytes  # raw public key (Ed25519), SEC1 point (ES256) or the shared secret (HS256)

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """Return True if ``signature`` is valid; an algorithm the key is not for never is."""
        family = "Ed25519" if alg == "EdDSA" else alg
        if family != self.alg:
            return False
        try:
            if family == "Ed25519":
                ed25519.Ed25519PublicKey.from_public_bytes(self.material).verify(
                    signature, signing_input
                )
                return True
            if family == "ES256":
                if len(signature) != 64:
                    return False
                r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                if s > P256_HALF_ORDER:
                    # ECDSA is malleable: (r, n - s) verifies too, so anyone could re-spell a
                    # token and change its chain hash. Only the low-s spelling is valid.
                    return False
                der = encode_dss_signature(r, s)
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), self.material)
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
                return True
            if family == "HS256":
                expected = hmac.new(self.material, signing_input, hashlib.sha256).digest()
                return hmac.compare_digest(expected, signature)
        except (InvalidSignature, ValueError):
            return False
        return False


def key_id(alg: str, material: bytes) -> str:
    """A stable key id: the algorithm plus 16 characters of the key's SHA-256 thumbprint."""
    return f"{alg.lower()}-{b64url(hashlib.sha256(material).digest())[:16]}"


def expected_kid(alg: str, material: bytes) -> str:
    """The kid a signer of ``alg`` with this key material announces (see docs/wire-format.md).

    HS256 hashes the secret first, so that the kid is no thumbprint of the secret itself.
    """
    if alg == "HS256":
        return key_id(alg, hashlib.sha256(b"nengtan-hs256-kid" + material).digest())
    return key_id(alg, material)


class Ed25519Signer:
    alg = "Ed25519"

    def __init__(self, private_key: ed25519.Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.kid = key_id(self.alg, self.public_bytes)

    def sign(self, signing_input: bytes) -> bytes:
        return self._key.sign(signing_input)

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.kid, self.alg, self.public_bytes)


class ES256Signer:
    alg = "ES256"

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise IdentityError("ES256 needs a P-256 key")
        self._key = private_key
        self.public_bytes = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.kid = key_id(self.alg, self.public_bytes)

    def sign(self, signing_input: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        if s > P256_HALF_ORDER:  # the one canonical spelling (see VerificationKey.verify)
            s = P256_ORDER - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.kid, self.alg, self.public_bytes)


class HS256Signer:
    alg = "HS256"

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise IdentityError("an HS256 secret must be at least 32 bytes (RFC 7518 §3.2)")
        self._secret = secret
        self.kid = expected_kid(self.alg, secret)

    def sign(self, signing_input: bytes) -> bytes:
        return hmac.new(self._secret, signing_input, hashlib.sha256).digest()

    def verification_key(self) -> VerificationKey:
        return VerificationKey(self.kid, self.alg, self._secret)


def sign_compact(signer: Signer, header_extra: dict[str, str], payload: bytes) -> str:
    """Return ``header.payload.signature``; the header carries alg, kid and ``header_extra``."""
    header = {"alg": signer.alg, "kid": signer.kid, **header_extra}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(payload)
    )
    return signing_input + "." + b64url(signer.sign(signing_input.encode("ascii")))


@dataclass(frozen=True)
class Compact:
    """A parsed but not yet verified compact JWS."""

    header: dict[str, object]
    payload: bytes
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header.get("alg", ""))

    @property
    def kid(self) -> str:
        return str(self.header.get("kid", ""))


def parse_compact(token: bytes | str) -> Compact:
    """Split and decode a compact JWS; raise EnvelopeError('malformed', …) on any defect."""
    try:
        text = token.decode("ascii") if isinstance(token, bytes) else token
        parts = text.split(".")
        if len(parts) != 3:
            raise ValueError(f"expected 3 dot-separated parts, found {len(parts)}")
        header = json.loads(b64url_decode(parts[0]))
        if not isinstance(header, dict):
            raise ValueError("protected header is not a JSON object")
        if "crit" in header:
            raise ValueError("'crit' header parameters are not supported")
        compact = Compact(
            header, b64url_decode(parts[1]), (parts[0] + "." + parts[1]).encode(), b64url_decode(parts[2])
        )
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise EnvelopeError("malformed", f"not a compact JWS: {exc}") from exc
    if compact.alg not in ACCEPTED_ALGORITHMS:
        raise EnvelopeError("unsupported_alg", f"algorithm {compact.alg!r} is not accepted")
    return compact
