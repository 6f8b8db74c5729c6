"""The envelope: a signed, hash-chained batch of poll cycles (see docs/wire-format.md).

An agent commits each poll cycle with its own sequence number; when it sends, it seals a run of
consecutive cycles ``seq..last`` into one envelope whose ``prev`` is the hash of the envelope
before it. The sealed bytes are stored before they are published, so a resend is byte-identical
and the chain never changes. The receiver deduplicates per cycle ``(gateway, epoch, seq)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nengtan.errors import EnvelopeError
from nengtan.jws import Compact, Signer, VerificationKey, b64url, parse_compact, sign_compact
from nengtan.measurements import VOCABULARY

WIRE_VERSION = 1
MEDIA_TYPE = "nengtan-batch+json"
QUALITIES = ("good", "suspect", "bad")
# Gateway ids travel in MQTT topics and file names: keep them to a safe alphabet.
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def valid_id(text: str) -> bool:
    return 0 < len(text) <= 64 and set(text) <= _ID_CHARS and not text.startswith(".")


@dataclass(frozen=True)
class Reading:
    meter: str
    measurement: str
    ts_ms: int  # when the value was read, milliseconds since 1970-01-01T00:00:00Z
    value: float | None  # None only with quality "bad"
    quality: str

    def as_wire(self) -> list[object]:
        return [self.meter, self.measurement, self.ts_ms, self.value, self.quality]


@dataclass(frozen=True)
class Cycle:
    seq: int
    readings: tuple[Reading, ...]


@dataclass(frozen=True)
class Envelope:
    gateway: str
    epoch: int
    seq: int
    last: int
    prev: str | None  # hash of the previous envelope of this epoch; None for the first
    time_synced: bool
    cycles: tuple[Cycle, ...]

    @property
    def reading_count(self) -> int:
        return sum(len(c.readings) for c in self.cycles)


def envelope_hash(token: str) -> str:
    """The chain hash of a sealed envelope: base64url SHA-256 of its compact bytes."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def encode_payload(envelope: Envelope) -> bytes:
    body = {
        "v": WIRE_VERSION,
        "gw": envelope.gateway,
        "epoch": envelope.epoch,
        "seq": envelope.seq,
        "last": envelope.last,
        "prev": envelope.prev,
        "synced": envelope.time_synced,
        "cycles": [
            {"seq": c.seq, "r": [r.as_wire() for r in c.readings]} for c in envelope.cycles
        ],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def seal(signer: Signer, envelope: Envelope) -> str:
    """Sign ``envelope`` and return the compact JWS."""
    return sign_compact(signer, {"typ": MEDIA_TYPE}, encode_payload(envelope))


def open_envelope(token: bytes | str, keys: Mapping[str, VerificationKey]) -> tuple[Envelope, Compact]:
    """Parse, verify and decode ``token`` against ``keys`` (by kid).

    Raise EnvelopeError with reason ``malformed``, ``unsupported_alg``, ``unknown_key`` or
    ``bad_signature`` before looking at the payload, and ``bad_payload`` if the signed payload
    breaks the contract. Whether the kid belongs to the payload's gateway is the caller's check.
    """
    compact = parse_compact(token)
    key = keys.get(compact.kid)
    if key is None:
        raise EnvelopeError("unknown_key", f"no enrolled key has kid {compact.kid!r}")
    if not key.verify(compact.alg, compact.signing_input, compact.signature):
        raise EnvelopeError("bad_signature", f"signature does not verify with key {key.kid}")
    return decode_payload(compact.payload), compact


def decode_payload(payload: bytes) -> Envelope:
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise EnvelopeError("bad_payload", f"payload is not JSON: {exc}") from exc
    problems: list[str] = []
    envelope = _decode(body, problems)
    if problems or envelope is None:
        raise EnvelopeError("bad_payload", "; ".join(problems[:5]))
    return envelope


def _int(body: Mapping[str, Any], key: str, problems: list[str], minimum: int = 0) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        problems.append(f"'{key}' must be an integer >= {minimum}")
        return minimum
    return value


def _decode(body: object, problems: list[str]) -> Envelope | None:
    if not isinstance(body, dict):
        problems.append("payload is not a JSON object")
        return None
    if body.get("v") != WIRE_VERSION:
        problems.append(f"'v' must be {WIRE_VERSION}")
    gateway = body.get("gw")
    if not isinstance(gateway, str) or not valid_id(gateway):
        problems.append("'gw' must be a gateway id")
        gateway = ""
    epoch = _int(body, "epoch", problems, 1)
    seq = _int(body, "seq", problems, 1)
    last = _int(body, "last", problems, 1)
    prev = body.get("prev")
    if prev is not None and (not isinstance(prev, str) or len(prev) != 43):
        problems.append("'prev' must be null or a base64url SHA-256")
        prev = None
    synced = body.get("synced")
    if not isinstance(synced, bool):
        problems.append("'synced' must be true or false")
    raw_cycles = body.get("cycles")
    if not isinstance(raw_cycles, list) or not raw_cycles:
        problems.append("'cycles' must be a non-empty list")
        return None
    cycles = tuple(_cycle(c, i, problems) for i, c in enumerate(raw_cycles))
    expected = list(range(seq, seq + len(cycles)))
    if [c.seq for c in cycles] != expected or last != expected[-1]:
        problems.append("cycle seqs must run without gaps from 'seq' to 'last'")
    return Envelope(gateway, epoch, seq, last, prev, bool(synced), cycles)


def _cycle(raw: object, index: int, problems: list[str]) -> Cycle:
    if not isinstance(raw, dict) or not isinstance(raw.get("r"), list):
        problems.append(f"cycles[{index}] must be an object with a list 'r'")
        return Cycle(-1, ())
    seq = _int(raw, "seq", problems, 1)
    readings = tuple(_reading(r, f"cycles[{index}].r[{j}]", problems) for j, r in enumerate(raw["r"]))
    return Cycle(seq, readings)


def _reading(raw: object, where: str, problems: list[str]) -> Reading:
    if not isinstance(raw, list) or len(raw) != 5:
        problems.append(f"{where} must be [meter, measurement, ts_ms, value, quality]")
        return Reading("", "", 0, None, "bad")
    meter, measurement, ts_ms, value, quality = raw
    if not isinstance(meter, str) or not valid_id(meter):
        problems.append(f"{where}: meter id {meter!r} is not valid")
    if measurement not in VOCABULARY:
        problems.append(f"{where}: {measurement!r} is not in the measurement vocabulary")
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool) or ts_ms < 0:
        problems.append(f"{where}: ts_ms must be a non-negative integer")
    if quality not in QUALITIES:
        problems.append(f"{where}: quality {quality!r} is not one of {', '.join(QUALITIES)}")
    if value is None:
        if quality != "bad":
            problems.append(f"{where}: a missing value must have quality 'bad'")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.append(f"{where}: value must be a finite number or null")
    return Reading(str(meter), str(measurement), ts_ms if isinstance(ts_ms, int) else 0,
                   float(value) if isinstance(value, (int, float)) else None, str(quality))


def cycles_from_rows(rows: Sequence[tuple[int, str]]) -> tuple[Cycle, ...]:
    """Rebuild cycles from stored ``(seq, readings-json)`` rows (the agent's buffer format)."""
    out = []
    for seq, blob in rows:
        items = json.loads(blob)
        out.append(Cycle(seq, tuple(Reading(*item) for item in items)))
    return tuple(out)
