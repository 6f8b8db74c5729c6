"""The key rotation record: one payload signed by the old key and by the new key.

Shared by the gateway, which writes it (``provisioning.rotation``), and the receiver, which
applies it (``cloud_receiver.rotation``); the format is in docs/keys.md. The old key's signature
proves the rotation is authorised by whoever held the enrolled key; the new key's proves that
the rotating party holds the new private key (nobody can enrol a key they cannot sign with).
Both must sign the very same payload bytes, so neither signature can be moved onto another
payload. This module checks everything that needs no registry: the structure, the payload, and
the new key's signature. The old key's signature needs the enrolled key: ``verify_old``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from nengtan.envelope import valid_id
from nengtan.errors import EnvelopeError, IdentityError
from nengtan.jws import (
    SIGNING_ALGORITHMS,
    Compact,
    Signer,
    VerificationKey,
    b64url,
    b64url_decode,
    expected_kid,
    parse_compact,
    sign_compact,
)

#: ``type`` of the file and of the payload.
ROTATION_TYPE = "nengtan-key-rotation"
#: ``typ`` of both JWS headers: a signed envelope or checkpoint can never pass for a rotation.
ROTATION_TYP = "nengtan-key-rotation+json"
FILE_KEYS = ("type", "signed_by_old", "signed_by_new")
PAYLOAD_KEYS = ("type", "gateway", "old_kid", "new", "from_epoch", "from_seq", "at")
NEW_KEYS = ("alg", "kid", "public_key")
#: RFC 7518 §3.2, as HS256Signer enforces.
HS256_MIN_SECRET = 32


class KeyLifecycleError(IdentityError):
    """A rotation record or a revocation is refused; nothing was changed."""

    hint = "Nothing was changed; docs/keys.md says what a rotation record must hold and when."


class KeySigner(Signer, Protocol):
    """A signer that can also say what the receiver must enrol to verify it."""

    def verification_key(self) -> VerificationKey: ...


@dataclass(frozen=True)
class NewKey:
    alg: str
    kid: str
    public_key: str  # base64url of the key material (for HS256: the secret itself)

    @property
    def material(self) -> bytes:
        return b64url_decode(self.public_key)


@dataclass(frozen=True)
class RotationPayload:
    """``old_kid`` of ``gateway`` signs nothing from cycle ``(from_epoch, from_seq)`` on; ``new``
    signs from there. ``at`` (ISO 8601) is when the gateway rotated."""

    gateway: str
    old_kid: str
    new: NewKey
    from_epoch: int
    from_seq: int
    at: str

    @property
    def point(self) -> tuple[int, int]:
        return (self.from_epoch, self.from_seq)

    def as_dict(self) -> dict[str, Any]:
        return {"type": ROTATION_TYPE, "gateway": self.gateway, "old_kid": self.old_kid,
                "new": {"alg": self.new.alg, "kid": self.new.kid,
                        "public_key": self.new.public_key},
                "from_epoch": self.from_epoch, "from_seq": self.from_seq, "at": self.at}

    def to_bytes(self) -> bytes:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class RotationRecord:
    """A parsed record whose structure, payload and new-key signature are checked."""

    payload: RotationPayload
    signed_by_old: Compact
    source: str

    def verify_old(self, key: VerificationKey) -> bool:
        """True if ``key`` (the enrolled old key) made the old signature."""
        c = self.signed_by_old
        return key.kid == self.payload.old_kid and key.verify(c.alg, c.signing_input, c.signature)


def new_payload(*, gateway: str, old_kid: str, new: KeySigner, from_epoch: int, from_seq: int,
                at: str) -> RotationPayload:
    key = new.verification_key()
    return RotationPayload(gateway, old_kid, NewKey(key.alg, key.kid, b64url(key.material)),
                           from_epoch, from_seq, at)


def sign_rotation(payload: RotationPayload, old: Signer, new: KeySigner) -> dict[str, str]:
    """The record file's JSON object: ``payload`` signed by ``old`` and by ``new``."""
    if old.kid != payload.old_kid or new.kid != payload.new.kid:
        raise KeyLifecycleError(f"the signers ({old.kid}, {new.kid}) are not the payload's old and "
                                f"new key ({payload.old_kid}, {payload.new.kid})")
    body, header = payload.to_bytes(), {"typ": ROTATION_TYP}
    return {"type": ROTATION_TYPE, "signed_by_old": sign_compact(old, header, body),
            "signed_by_new": sign_compact(new, header, body)}


def dump_rotation(document: dict[str, str]) -> str:
    return json.dumps(document, indent=2) + "\n"


def _check_material(alg: str, material: bytes) -> str | None:
    try:
        if alg == "Ed25519":
            ed25519.Ed25519PublicKey.from_public_bytes(material)
        elif alg == "ES256":
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), material)
        elif len(material) < HS256_MIN_SECRET:
            return f"an HS256 secret must be at least {HS256_MIN_SECRET} bytes"
    except ValueError as exc:
        return f"public_key is not a valid {alg} public key: {exc}"
    return None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _payload(data: object) -> tuple[RotationPayload | None, list[str]]:
    if not isinstance(data, dict):
        return None, ["the payload is not a JSON object"]
    problems = []
    if set(data) != set(PAYLOAD_KEYS):
        problems.append(f"the payload must hold exactly {', '.join(PAYLOAD_KEYS)} (missing: "
                        f"{', '.join(sorted(set(PAYLOAD_KEYS) - set(data))) or '-'}; unknown: "
                        f"{', '.join(sorted(set(data) - set(PAYLOAD_KEYS))) or '-'})")
        return None, problems
    new = data["new"]
    if data["type"] != ROTATION_TYPE:
        problems.append(f"payload type {data['type']!r} is not {ROTATION_TYPE!r}")
    if not isinstance(data["gateway"], str) or not valid_id(data["gateway"]):
        problems.append(f"gateway {data['gateway']!r} is not a valid gateway id")
    if not isinstance(data["old_kid"], str) or not data["old_kid"]:
        problems.append("old_kid must be a non-empty string")
    for name in ("from_epoch", "from_seq"):
        if not _is_count(data[name]):
            problems.append(f"{name} must be an integer >= 1, not {data[name]!r}")
    try:
        datetime.fromisoformat(data["at"])
    except (TypeError, ValueError):
        problems.append(f"at {data['at']!r} is not an ISO 8601 time")
    if not isinstance(new, dict) or set(new) != set(NEW_KEYS) or not all(
            isinstance(new[k], str) for k in NEW_KEYS):
        problems.append(f"new must be an object of the strings {', '.join(NEW_KEYS)}")
    elif new["alg"] not in SIGNING_ALGORITHMS:
        problems.append(f"new.alg {new['alg']!r} is not one of {', '.join(SIGNING_ALGORITHMS)}")
    else:
        try:
            material = b64url_decode(new["public_key"])
        except ValueError:
            problems.append("new.public_key is not base64url without padding")
        else:
            defect = _check_material(new["alg"], material)
            if defect:
                problems.append(f"new.{defect}")
            elif expected_kid(new["alg"], material) != new["kid"]:
                problems.append(f"new.kid {new['kid']!r} does not match the new key (expected "
                                f"{expected_kid(new['alg'], material)!r})")
    if not problems and new["kid"] == data["old_kid"]:
        problems.append("the new key is the old key")
    if problems:
        return None, problems
    return RotationPayload(data["gateway"], data["old_kid"],
                           NewKey(new["alg"], new["kid"], new["public_key"]),
                           data["from_epoch"], data["from_seq"], data["at"]), []


def _compact(document: dict[str, Any], name: str) -> tuple[Compact | None, str | None]:
    value = document.get(name)
    if not isinstance(value, str):
        return None, f"{name} is missing (the record must be signed by the old and the new key)"
    try:
        compact = parse_compact(value)
    except EnvelopeError as exc:
        return None, f"{name}: {exc.detail}"
    if compact.header.get("typ") != ROTATION_TYP:
        return None, f"{name} has typ {compact.header.get('typ')!r}, not {ROTATION_TYP!r}"
    return compact, None


def parse_rotation(text: str | bytes, source: str) -> RotationRecord:
    """Check a record file's text; raise KeyLifecycleError naming ``source`` and every defect.

    Checked here: the structure, that both signatures cover the same payload, the payload's
    fields, that the new key matches its kid, that each signature names the right kid, and the
    new key's signature. Not checked (it needs the registry): the old key's signature.
    """
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeyLifecycleError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("type") != ROTATION_TYPE:
        raise KeyLifecycleError(f"{source}: not a key rotation record (a JSON object with "
                                f"\"type\": {ROTATION_TYPE!r})")
    problems = []
    unknown = sorted(set(document) - set(FILE_KEYS))
    if unknown:
        problems.append(f"unknown key(s): {', '.join(unknown)}")
    by_old, old_problem = _compact(document, "signed_by_old")
    by_new, new_problem = _compact(document, "signed_by_new")
    problems += [p for p in (old_problem, new_problem) if p]
    if by_old is None or by_new is None or problems:
        raise KeyLifecycleError(f"{source}: " + "; ".join(problems))
    if by_old.payload != by_new.payload:
        raise KeyLifecycleError(f"{source}: the two signatures cover different payloads (both keys "
                                "must sign the same rotation)")
    try:
        data = json.loads(by_old.payload)
    except ValueError as exc:
        raise KeyLifecycleError(f"{source}: the payload is not JSON: {exc}") from exc
    payload, problems = _payload(data)
    if payload is None:
        raise KeyLifecycleError(f"{source}: " + "; ".join(problems))
    if by_old.kid != payload.old_kid:
        problems.append(f"signed_by_old is signed by key {by_old.kid!r}, not by the old key "
                        f"{payload.old_kid!r}")
    if by_new.kid != payload.new.kid:
        problems.append(f"signed_by_new is signed by key {by_new.kid!r}, not by the new key "
                        f"{payload.new.kid!r}")
    elif not VerificationKey(payload.new.kid, payload.new.alg, payload.new.material).verify(
            by_new.alg, by_new.signing_input, by_new.signature):
        problems.append(f"the new key's signature ({payload.new.kid}) does not verify")
    if problems:
        raise KeyLifecycleError(f"{source}: " + "; ".join(problems))
    return RotationRecord(payload, by_old, source)
