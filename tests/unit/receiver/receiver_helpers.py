"""Envelope and enrollment builders shared by the receiver's unit tests (imported by name:
this folder has no __init__.py, so pytest puts it on sys.path)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519

from nengtan.checkpoint import Checkpoint, seal_checkpoint
from nengtan.envelope import ClockInfo, Cycle, Envelope, Gap, Reading, envelope_hash, seal
from nengtan.jws import Ed25519Signer, b64url

GATEWAY = "gw-zz-01"
TOPIC = f"nengtan/v1/{GATEWAY}/batch"
CHECKPOINT_TOPIC = f"nengtan/v1/{GATEWAY}/checkpoint"
T0 = 1_748_736_000_000  # 2025-06-01T00:00:00Z


def enrollment_record(signer: Ed25519Signer, gateway: str) -> dict[str, str]:
    return {"gateway": gateway, "alg": signer.alg, "kid": signer.kid,
            "public_key": b64url(signer.public_bytes), "enrolled_at": "2025-05-30T09:00:00+08:00"}


def new_signer() -> Ed25519Signer:
    return Ed25519Signer(ed25519.Ed25519PrivateKey.generate())


@dataclass
class Batches:
    """Seals envelopes for one gateway; ``chain`` keeps the hash of each sealed envelope."""

    signer: Ed25519Signer
    gateway: str = GATEWAY
    chain: dict[int, str] = field(default_factory=dict)  # last seq -> hash

    def seal(self, seq: int, last: int | None = None, *, epoch: int = 1,
             prev: str | bool | None = True, values: Sequence[float | None] | None = None,
             meter: str = "m1", gateway: str | None = None, gaps: Sequence[Gap] = (),
             clock: ClockInfo | None = None, version: int = 2) -> str:
        """Cycles ``seq..last``, one energy reading each. ``prev=True`` links to the envelope
        sealed earlier by this helper that ends at ``seq - 1`` (or, if there is none, the
        latest one before ``seq``, as a gateway does after dropping cycles)."""
        last = seq if last is None else last
        values = values or [100.0 + i for i in range(seq, last + 1)]
        cycles = tuple(
            Cycle(s, (Reading(meter, "active_energy_import", T0 + s * 60_000, v,
                              "good" if v is not None else "bad"),))
            for s, v in zip(range(seq, last + 1), values)
        )
        if prev is True:
            before = [s for s in self.chain if s < seq]
            link = self.chain[max(before)] if before else None
        else:
            link = prev
        assert not isinstance(link, bool)
        env = Envelope(gateway or self.gateway, epoch, seq, last, link, True, cycles,
                       tuple(gaps), clock)
        token = seal(self.signer, env, version=version)
        self.chain[last] = envelope_hash(token)
        return token

    def checkpoint(self, last: int, *, head: str | bool | None = True, sealed: int | None = None,
                   epoch: int = 1, gateway: str | None = None) -> str:
        """A checkpoint at ``last``; ``head=True`` names the envelope this helper sealed ending
        there, ``sealed`` defaults to how many envelopes it sealed up to there."""
        link = self.chain.get(last) if head is True else head
        assert not isinstance(link, bool)
        count = sum(1 for s in self.chain if s <= last) if sealed is None else sealed
        return seal_checkpoint(self.signer, Checkpoint(gateway or self.gateway, epoch, last,
                                                       link, count))


def deflate(document: bytes) -> bytes:
    """Raw DEFLATE, as wire v2 payloads are."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    return deflater.compress(document) + deflater.flush()
