"""Zero false rejections: a fleet's worth of valid envelopes, delivered the way a real network
delivers them (interleaved, late, out of order, resent), are all stored, each exactly once.

Six gateways cover what a valid sender may do: Ed25519, ES256 and HS256 keys; a key rotated in
the middle of an epoch (the old key revoked from the rotation point, and part of its backlog
arriving after the revocation is on record); wire v1 and v2; clock info; dropped cycles declared
as gaps; several epochs; checkpoints that arrive before the envelopes they name. The tamper
matrix (test_receiver_tamper.py) is the other half: nothing invalid is accepted.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.store import MissingRange, Revocation, Store
from nengtan.checkpoint import Checkpoint, seal_checkpoint
from nengtan.envelope import ClockInfo, Cycle, Envelope, Gap, Reading, envelope_hash, seal
from nengtan.jws import Ed25519Signer, ES256Signer, HS256Signer, Signer, b64url

ENVELOPES = 100_000
# On PostgreSQL each ingest is a dozen round trips and a commit: on the 2-core test machine,
# shared with other jobs, 3,000 envelopes took 40 s and 5,000 took 76 s, so 100,000 would take
# 10 to 25 minutes. Which envelopes are valid is decided by the ingest, the same code on both
# backends; the PostgreSQL run checks that its backend keeps the ingest's contract, and that
# does not take 100,000 envelopes.
ENVELOPES_ON_POSTGRES = 3_000
T0 = 1_748_736_000_000  # 2025-06-01T00:00:00Z
MINUTE = 60_000
ENERGY, VOLTAGE = "active_energy_import", "voltage_l1_n"
WINDOW = 32  # how far (in messages) an arrival may overtake another
VERY_LATE = 0.005  # share of messages held back until everything else has arrived
RESENT = 0.01  # share of envelopes delivered twice
CHECKPOINT_EVERY = 500  # envelopes


def _ed25519() -> Ed25519Signer:
    return Ed25519Signer(ed25519.Ed25519PrivateKey.generate())


def _es256() -> ES256Signer:
    return ES256Signer(ec.generate_private_key(ec.SECP256R1()))


@dataclass(frozen=True)
class Spec:
    gateway: str
    keys: tuple[Signer, ...]  # two keys: rotated from the first to the second in epoch 1
    versions: tuple[int, ...]  # wire versions it seals with
    series: tuple[str, ...]  # measurements per cycle, all of meter "m1"
    gap_rate: float  # share of envelopes preceded by dropped cycles (declared: wire v2 only)
    epochs: int
    in_order: bool = False  # its messages arrive in the order it sent them


@dataclass(frozen=True)
class Message:
    kind: str  # "batch" or "checkpoint"
    topic: str
    token: bytes
    key: tuple[str, int, int]  # (gateway, epoch, first cycle); a checkpoint's last cycle
    readings: int = 0
    counters: int = 0  # good energy readings
    very_late: bool = False  # forced to arrive after everything else
    in_order: bool = False


@dataclass
class Stream:
    messages: list[Message]
    gaps: dict[tuple[str, int], list[Gap]]  # per (gateway, epoch)
    last: dict[tuple[str, int], int]  # last cycle sealed
    envelopes: dict[tuple[str, int], int]  # envelopes sealed
    revocation: Revocation | None = None


def _material(signer: Signer, secret: bytes | None) -> bytes:
    return secret if secret is not None else signer.public_bytes


def seal_stream(spec: Spec, count: int, rng: random.Random) -> Stream:
    """``count`` valid envelopes of one gateway, in the order it seals them, with its
    checkpoints."""
    out = Stream([], {}, {}, {})
    per_epoch = [count // spec.epochs + (i < count % spec.epochs) for i in range(spec.epochs)]
    cycle_ts, energy = T0, 1000.0  # the meter's register does not restart with an epoch
    for epoch, n in enumerate(per_epoch, start=1):
        seq, prev = 1, None
        stream = (spec.gateway, epoch)
        out.gaps[stream] = []
        rotate_at = n // 2 if epoch == 1 and len(spec.keys) > 1 else None
        for i in range(n):
            signer = spec.keys[0 if rotate_at is not None and i < rotate_at else -1]
            if i == rotate_at:
                out.revocation = Revocation(spec.keys[0].kid, spec.gateway, epoch, seq, "rotated",
                                            "2025-06-01T08:00:00+08:00", "test rotation")
            version = rng.choice(spec.versions)
            gaps: tuple[Gap, ...] = ()
            if rng.random() < spec.gap_rate:
                dropped = rng.randint(1, 4)
                gaps = (Gap(seq, seq + dropped - 1, dropped * len(spec.series), "disk_cap"),)
                out.gaps[stream].append(gaps[0])
                seq += dropped
                cycle_ts += dropped * MINUTE
                version = 2  # only v2 can declare them
            cycles = []
            for s in range(seq, seq + rng.choice((1, 1, 2, 3))):
                cycle_ts += MINUTE
                energy += rng.uniform(0.0, 2.0)
                readings = [Reading("m1", ENERGY, cycle_ts, round(energy, 3), "good")]
                if rng.random() < 0.005:  # a failed read: kept, with no value
                    readings = [Reading("m1", ENERGY, cycle_ts, None, "bad")]
                if VOLTAGE in spec.series:
                    readings.append(Reading("m1", VOLTAGE, cycle_ts + 40,
                                            round(rng.gauss(230.0, 2.0), 1), "good"))
                cycles.append(Cycle(s, tuple(readings)))
            clock = (ClockInfo("boot-1", cycle_ts - T0, cycle_ts)
                     if version == 2 and rng.random() < 0.1 else None)
            last = cycles[-1].seq
            token = seal(signer, Envelope(spec.gateway, epoch, seq, last, prev, True,
                                          tuple(cycles), gaps, clock), version=version)
            good = sum(1 for c in cycles for r in c.readings
                       if r.measurement == ENERGY and r.quality == "good")
            # Part of the old key's backlog lands only after the new key's envelopes (all of
            # it after the revocation, which is on record before anything arrives).
            late = rotate_at is not None and rotate_at - 5 <= i < rotate_at
            out.messages.append(Message("batch", f"nengtan/v1/{spec.gateway}/batch",
                                        token.encode(), (spec.gateway, epoch, seq),
                                        sum(len(c.readings) for c in cycles), good, late,
                                        spec.in_order))
            prev, seq = envelope_hash(token), last + 1
            if (i + 1) % CHECKPOINT_EVERY == 0 or i == n - 1:
                checkpoint = seal_checkpoint(signer, Checkpoint(spec.gateway, epoch, last, prev,
                                                                i + 1))
                out.messages.append(Message("checkpoint", f"nengtan/v1/{spec.gateway}/checkpoint",
                                            checkpoint.encode(), (spec.gateway, epoch, last),
                                            in_order=spec.in_order))
        out.last[stream], out.envelopes[stream] = seq - 1, n
    return out


def arrival_order(streams: list[Stream], rng: random.Random) -> tuple[list[Message], int, int]:
    """Every message of every stream, interleaved and reordered as a network would: each may
    overtake up to WINDOW others, a few are held back to the very end, and some envelopes and
    checkpoints are delivered twice. Returns the arrivals and the resent envelope and
    checkpoint counts."""
    keyed: list[tuple[float, Message]] = []
    total = sum(len(s.messages) for s in streams)
    for stream in streams:
        n = len(stream.messages)
        for i, message in enumerate(stream.messages):
            # Interleave gateways in proportion, then let the window reorder locally.
            at = (i / n) * total
            if not message.in_order:
                at += rng.uniform(0, WINDOW)
                if message.very_late or rng.random() < VERY_LATE:
                    at += 2 * total
            keyed.append((at, message))
    resent = Counter[str]()
    for at, message in list(keyed):
        if rng.random() < RESENT:
            keyed.append((at + rng.uniform(0, 3 * total), message))
            resent[message.kind] += 1
    keyed.sort(key=lambda item: item[0])
    return [m for _, m in keyed], resent["batch"], resent["checkpoint"]


def _overtaken(arrivals: list[Message]) -> Counter[str]:
    """Per gateway, how many envelopes arrive (the first time) after a later one of the
    same stream."""
    highest: dict[tuple[str, int], int] = {}
    seen: set[bytes] = set()
    out = Counter[str]()
    for m in arrivals:
        if m.kind == "batch" and m.token not in seen:
            seen.add(m.token)
            stream = m.key[:2]
            if m.key[2] < highest.get(stream, 0):
                out[m.key[0]] += 1
            highest[stream] = max(highest.get(stream, 0), m.key[2])
    return out


def _envelope_count(request: pytest.FixtureRequest) -> int:
    callspec = getattr(request.node, "callspec", None)
    backend = callspec.params.get("store", "sqlite") if callspec is not None else "sqlite"
    return ENVELOPES if backend == "sqlite" else ENVELOPES_ON_POSTGRES


# 100,000 envelopes take about a minute on an idle 2-core machine and four when other jobs
# share it; the default 300 s limit would make a busy CI runner fail a passing test.
@pytest.mark.timeout(900)
def test_valid_envelopes_are_never_rejected_and_each_is_stored_once(
        store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    rng = random.Random(20250601)
    hs_secrets = {name: bytes(rng.randrange(256) for _ in range(32)) for name in "abc"}
    specs = [
        Spec("gw-ed-01", (_ed25519(),), (2,), (ENERGY,), 0.01, 2, in_order=True),
        Spec("gw-es-01", (_es256(),), (1, 2), (ENERGY, VOLTAGE), 0.005, 2),
        Spec("gw-hs-01", (HS256Signer(hs_secrets["a"]),), (2,), (ENERGY,), 0.02, 3),
        # A MicroPython node: HS256, as it cannot sign with public keys fast enough, wire v1.
        Spec("gw-v1-01", (HS256Signer(hs_secrets["c"]),), (1,), (ENERGY, VOLTAGE), 0.0, 2),
        Spec("gw-rot-01", (_ed25519(), _es256()), (2,), (ENERGY,), 0.01, 2),
        Spec("gw-hs-02", (HS256Signer(hs_secrets["b"]),), (1, 2), (ENERGY,), 0.01, 2),
    ]
    directory = tmp_path / "gateways"
    directory.mkdir()
    secret_of = {HS256Signer(secret).kid: secret for secret in hs_secrets.values()}
    for spec in specs:
        for signer in spec.keys:
            record = directory / f"{signer.kid}.json"
            record.write_text(json.dumps({
                "gateway": spec.gateway, "alg": signer.alg, "kid": signer.kid,
                "public_key": b64url(_material(signer, secret_of.get(signer.kid))),
                "enrolled_at": "2025-05-30T09:00:00+08:00"}))
            record.chmod(0o600)  # an HS256 record holds the secret
    registry = Registry(store, directory)
    assert registry.reload().errors == ()
    ingestor = Ingestor(store, registry, clock_ms=lambda: T0 + 86_400_000)

    total = _envelope_count(request)
    counts = [total // len(specs) + (i < total % len(specs)) for i in range(len(specs))]
    streams = [seal_stream(spec, n, rng) for spec, n in zip(specs, counts)]
    for stream in streams:
        if stream.revocation is not None:  # the operator recorded the rotation
            assert store.revoke_key(stream.revocation)
    registry.refresh()
    arrivals, resent_batches, resent_checkpoints = arrival_order(streams, rng)
    batches = [m for s in streams for m in s.messages if m.kind == "batch"]
    checkpoints = [m for s in streams for m in s.messages if m.kind == "checkpoint"]
    assert len(batches) == total
    overtaken = _overtaken(arrivals)
    assert overtaken["gw-ed-01"] == 0 and min(
        n for gw, n in overtaken.items() if gw != "gw-ed-01") > total // len(specs) // 10

    outcomes: Counter[tuple[str, Status]] = Counter()
    rejected, alerted, readings = [], [], 0
    for message in arrivals:
        outcome = ingestor.ingest(message.topic, message.token)
        outcomes[(message.kind, outcome.status)] += 1
        readings += outcome.readings
        if outcome.status == Status.QUARANTINED:
            rejected.append((message.key, outcome.reason, outcome.detail))
        if outcome.alerts:
            alerted.append((message.key, outcome.alerts))

    assert not rejected, f"{len(rejected)} valid messages quarantined, the first: {rejected[:5]}"
    assert alerted == []
    expected = {("batch", Status.ACCEPTED): total, ("batch", Status.DUPLICATE): resent_batches,
                ("checkpoint", Status.ACCEPTED): len(checkpoints),
                ("checkpoint", Status.DUPLICATE): resent_checkpoints}
    assert outcomes == Counter(expected)
    assert readings == sum(m.readings for m in batches)
    assert Counter(store.counters()) == Counter({"duplicate": resent_batches,
                                                 "duplicate_checkpoint": resent_checkpoints})
    stats = store.stats()
    assert {t: stats[t] for t in ("envelopes", "readings", "counter_points", "quarantine",
                                  "alerts", "checkpoints", "gaps")} == {
        "envelopes": total, "readings": readings, "counter_points": sum(m.counters for m in batches),
        "quarantine": 0, "alerts": 0, "checkpoints": len(checkpoints),
        "gaps": sum(len(g) for s in streams for g in s.gaps.values())}

    # Each envelope is stored once, as the bytes its gateway sealed, and every stream is
    # complete but for the cycles its gateway declared dropped.
    with store.transaction() as txn:
        for message in batches:
            stored = txn.envelope_starting_at(*message.key)
            assert stored is not None and stored.hash == envelope_hash(message.token.decode())
    summaries = {(s.gateway, s.epoch): s for s in store.streams()}
    for stream in streams:
        for key, gaps in stream.gaps.items():
            summary = summaries[key]
            assert (summary.envelopes, summary.stored_last, summary.checkpoint_last,
                    summary.checkpoint_sealed, summary.conflicts) == (
                stream.envelopes[key], stream.last[key], stream.last[key],
                stream.envelopes[key], 0), key
            assert store.missing_ranges(*key) == [
                MissingRange(g.first, g.last, "declared", "disk_cap") for g in gaps], key
    assert len(summaries) == sum(spec.epochs for spec in specs)
