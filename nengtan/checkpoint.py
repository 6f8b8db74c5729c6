"""Signed checkpoints: the gateway's own statement of how far its envelope chain reaches.

A gateway publishes one now and then (and may repeat it) on ``<prefix>/<gateway>/checkpoint``.
It names the last cycle it has sealed and the chain hash of the envelope ending there, so the
receiver can tell "nothing was sent" from "something was lost on the way", list exactly which
cycle ranges it is missing, and notice a stored envelope that differs from the one the gateway
sealed. See docs/wire-format.md, "Checkpoints".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

# The payload checks are the envelope's own, so both messages fail in the same words.
from nengtan.envelope import (
    ClockInfo,
    _bad,
    _int,
    _load_json,
    clock_from_wire,
    valid_id,
    verify_compact,
)
from nengtan.jws import Compact, Signer, VerificationKey, sign_compact

CHECKPOINT_VERSION = 1
CHECKPOINT_MEDIA_TYPE = "nengtan-checkpoint+json"


@dataclass(frozen=True)
class Checkpoint:
    gateway: str
    epoch: int
    last: int  # the last cycle seq the gateway has sealed in this epoch; 0 if none yet
    head: str | None  # chain hash of the envelope ending at ``last``; None when last is 0
    sealed: int  # how many envelopes the gateway has sealed in this epoch
    clock: ClockInfo | None = None


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    c = checkpoint
    body: dict[str, object] = {"v": CHECKPOINT_VERSION, "gw": c.gateway, "epoch": c.epoch,
                               "last": c.last, "head": c.head, "sealed": c.sealed}
    if c.clock is not None:
        body["clock"] = {"boot_id": c.clock.boot_id, "mono_ms": c.clock.mono_ms,
                         "wall_ms": c.clock.wall_ms}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def seal_checkpoint(signer: Signer, checkpoint: Checkpoint) -> str:
    """Sign ``checkpoint`` and return the compact JWS (``typ: nengtan-checkpoint+json``)."""
    return sign_compact(signer, {"typ": CHECKPOINT_MEDIA_TYPE}, encode_checkpoint(checkpoint))


def open_checkpoint(token: bytes | str,
                    keys: Mapping[str, VerificationKey]) -> tuple[Checkpoint, Compact]:
    """Parse, verify and decode a checkpoint token, with the reasons of ``open_envelope``
    (a token of another ``typ``, such as a batch envelope, is ``malformed``)."""
    compact = verify_compact(token, keys, (CHECKPOINT_MEDIA_TYPE,))
    return decode_checkpoint(compact.payload), compact


def decode_checkpoint(payload: bytes) -> Checkpoint:
    """Check a verified checkpoint payload; EnvelopeError('bad_payload') if it is not one."""
    body = _load_json(payload)
    if not isinstance(body, dict):
        _bad(["payload is not a JSON object"])
    problems: list[str] = []
    if body.get("v") != CHECKPOINT_VERSION or type(body.get("v")) is not int:
        problems.append(f"'v' must be {CHECKPOINT_VERSION}")
    gateway = body.get("gw")
    if not isinstance(gateway, str) or not valid_id(gateway):
        problems.append("'gw' must be a gateway id")
    epoch = _int(body, "epoch", problems, 1)
    last = _int(body, "last", problems, 0)
    sealed = _int(body, "sealed", problems, 0)
    head = body.get("head")
    if last == 0:
        if head is not None or sealed != 0:
            problems.append("with 'last' 0 (nothing sealed yet), 'head' must be null and "
                            "'sealed' 0")
    else:
        if not isinstance(head, str) or len(head) != 43:
            problems.append("'head' must be the base64url SHA-256 of the envelope ending at "
                            "'last'")
        if not 1 <= sealed <= last:
            problems.append("'sealed' must be from 1 to 'last' (an envelope holds >= 1 cycle)")
    clock = clock_from_wire(body.get("clock"), problems)
    if problems:
        _bad(problems)
    return Checkpoint(str(gateway), epoch, last, None if head is None else str(head), sealed,
                      clock)
