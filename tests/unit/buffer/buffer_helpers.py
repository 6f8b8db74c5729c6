"""Shared by the buffer tests: a signer, readings, a clock the test moves by hand."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519

from nengtan.envelope import ClockInfo, Envelope, Reading, seal
from nengtan.jws import Ed25519Signer

SIGNER = Ed25519Signer(ed25519.Ed25519PrivateKey.generate())
KEYS = {SIGNER.kid: SIGNER.verification_key()}
T0 = 1_763_769_600_000  # 2025-11-22T00:00:00Z


def reading(i: int, meter: str = "main") -> Reading:
    return Reading(meter, "active_energy_import", T0 + i, 100.0 + i, "good")


def readings(n: int, start: int = 0) -> list[Reading]:
    return [reading(start + i) for i in range(n)]


class FakeClock:
    """boot id, CLOCK_BOOTTIME and wall clock, all moved by the test."""

    def __init__(self, boot: str = "boot-a", mono_ms: int = 5_000, wall_ms: int = T0) -> None:
        self.boot, self.mono_ms, self.wall_ms = boot, mono_ms, wall_ms

    def __call__(self) -> ClockInfo:
        return ClockInfo(self.boot, self.mono_ms, self.wall_ms)

    def advance(self, seconds: float) -> None:
        self.mono_ms += int(seconds * 1000)
        self.wall_ms += int(seconds * 1000)

    def reboot(self, boot: str, wall_ms: int) -> None:
        self.boot, self.mono_ms, self.wall_ms = boot, 3_000, wall_ms


class Recorder:
    """A sealer that signs for real and keeps every envelope it was given."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def __call__(self, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return seal(SIGNER, envelope)
