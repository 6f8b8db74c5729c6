"""Tamper matrix: every attack on a legitimately ingested stream is rejected or flagged.

The world: two enrolled gateways with real streams already stored. Gateway A (Ed25519) rotated
its key in the middle of epoch 1 (the first key is revoked from cycle 21 on, as a rotation
records it) and then started epoch 2; gateway B (ES256) has one epoch. Each case below builds one
message from that world, as an attacker on the network (or holding a stolen, revoked or foreign
key) could, and names the exact outcome: quarantined with a reason, a counted duplicate that
stores nothing, or a checkpoint kept as evidence. Whatever the case, no stored reading changes,
a quarantined message keeps its raw bytes, and no attack is accepted as data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from receiver_helpers import Batches, new_signer

from cloud_receiver.ingest import CHECKPOINT_CONFLICT, Ingestor, Outcome, Status
from cloud_receiver.registry import Registry
from cloud_receiver.store import ROLLUP_PERIODS, Revocation, Store
from nengtan.envelope import Envelope, decode_payload, encode_payload, envelope_hash
from nengtan.jws import ES256Signer, Signer, b64url, b64url_decode

GW_A, GW_B = "gw-aa-01", "gw-bb-02"
ROTATED_AT = (1, 21)  # A's first key signs nothing from epoch 1 cycle 21 on
# The legitimate streams, as (first, last) cycles per envelope.
A_EPOCH1_OLD_KEY = [(1, 3), (4, 4), (5, 6), (7, 9), (10, 10), (11, 12), (13, 15), (16, 18),
                    (19, 20)]
A_EPOCH1_NEW_KEY = [(21, 22), (23, 23), (24, 26), (27, 30)]
A_EPOCH2 = [(1, 2), (3, 3), (4, 6), (7, 10)]
B_EPOCH1 = [(s, s) for s in range(1, 31)]  # one cycle each, so "10 envelopes" is 10 cycles
Key = tuple[str, int, int]  # (gateway, epoch, first cycle) of a legitimate envelope


def topic(gateway: str, kind: str = "batch") -> str:
    return f"nengtan/v1/{gateway}/{kind}"


def _record(signer: Signer, gateway: str, material: bytes) -> str:
    return json.dumps({"gateway": gateway, "alg": signer.alg, "kid": signer.kid,
                       "public_key": b64url(material), "enrolled_at": "2025-05-30T09:00:00+08:00"})


@dataclass
class World:
    store: Store
    registry: Registry
    ingestor: Ingestor
    a_old: Batches  # A's first key, epoch 1 up to the rotation (revoked from ROTATED_AT)
    a_new: Batches  # A's current key, epoch 1 from the rotation on (shares a_old's chain)
    a2: Batches  # A's current key, epoch 2
    b: Batches  # B, ES256
    attacker: Batches  # an Ed25519 key nobody enrolled
    b_public: bytes
    sealed: dict[Key, str] = field(default_factory=dict)

    @classmethod
    def build(cls, store: Store, directory: Path, withhold: frozenset[Key]) -> World:
        a_old, a_new = new_signer(), new_signer()
        b_signer = ES256Signer(ec.generate_private_key(ec.SECP256R1()))
        directory.mkdir()
        for name, signer, gateway, material in [
                ("a-old", a_old, GW_A, a_old.public_bytes), ("a-new", a_new, GW_A, a_new.public_bytes),
                ("b", b_signer, GW_B, b_signer.public_bytes)]:
            (directory / f"{name}.json").write_text(_record(signer, gateway, material))
        registry = Registry(store, directory)
        assert registry.reload().errors == ()
        # The rotation is on record before the backlog arrives: cycles sealed before the
        # rotation point by the old key must still land.
        assert store.revoke_key(Revocation(a_old.kid, GW_A, *ROTATED_AT, "rotated",
                                           "2025-06-01T08:00:00+08:00", "test rotation"))
        registry.refresh()
        old = Batches(a_old, GW_A)
        world = cls(store, registry, Ingestor(store, registry), old,
                    Batches(a_new, GW_A, chain=old.chain), Batches(a_new, GW_A),
                    Batches(b_signer, GW_B), Batches(new_signer(), GW_A),
                    b_signer.public_bytes)
        plan = ([(world.a_old, 1, first, last, 2) for first, last in A_EPOCH1_OLD_KEY]
                + [(world.a_new, 1, first, last, 2) for first, last in A_EPOCH1_NEW_KEY]
                + [(world.b, 1, first, last, 1 if first % 3 == 0 else 2)
                   for first, last in B_EPOCH1]
                + [(world.a2, 2, first, last, 1 + i % 2)
                   for i, (first, last) in enumerate(A_EPOCH2)])
        for batches, epoch, seq, last, version in plan:
            key = (batches.gateway, epoch, seq)
            token = world.sealed[key] = batches.seal(seq, last, epoch=epoch, version=version)
            if key not in withhold:
                outcome = world.ingestor.ingest(topic(batches.gateway), token.encode())
                assert outcome.status == Status.ACCEPTED, outcome
        return world

    def token(self, gateway: str, epoch: int, seq: int) -> str:
        return self.sealed[(gateway, epoch, seq)]

    def fresh_a(self, signer: Signer | None = None, seq: int = 11, last: int | None = 12,
                **kw: object) -> str:
        """A's next envelope in epoch 2 (not stored yet), linked to the stored chain; sealed
        by A's current key unless ``signer`` says otherwise."""
        return Batches(signer or self.a2.signer, GW_A,
                       chain=dict(self.a2.chain)).seal(seq, last, epoch=2, **kw)

    def a_epoch1(self, signer: Signer, seq: int, last: int | None = None, **kw: object) -> str:
        """Cycles of A's epoch 1 sealed by ``signer``, linked to the genuine chain."""
        return Batches(signer, GW_A, chain=dict(self.a_old.chain)).seal(
            seq, last, epoch=1, **kw)


# Token surgery ---------------------------------------------------------------------------------

def header_of(token: str) -> dict[str, object]:
    header: dict[str, object] = json.loads(b64url_decode(token.split(".")[0]))
    return header


def with_header(token: str, **changes: object) -> str:
    """The token with its protected header changed (a value of None removes the member) and
    the original signature kept."""
    header = {k: v for k, v in {**header_of(token), **changes}.items() if v is not None}
    _, payload, signature = token.split(".")
    return ".".join([b64url(json.dumps(header, separators=(",", ":")).encode()), payload, signature])


def envelope_of(token: str) -> Envelope:
    return decode_payload(b64url_decode(token.split(".")[1]), str(header_of(token)["typ"]))


def version_of(token: str) -> int:
    return 1 if str(header_of(token)["typ"]).endswith("+json") else 2


def with_payload(token: str, envelope: Envelope) -> str:
    """The token carrying ``envelope`` instead, with the original header and signature."""
    header, _, signature = token.split(".")
    return ".".join([header, b64url(encode_payload(envelope, version_of(token))), signature])


def flip_byte(segment: str, index: int) -> str:
    """``segment`` (base64url) with one decoded byte's low bit flipped."""
    raw = bytearray(b64url_decode(segment))
    raw[index] ^= 0x01
    return b64url(bytes(raw))


def flip_part(token: str, part: int) -> str:
    parts = token.split(".")
    parts[part] = flip_byte(parts[part], len(b64url_decode(parts[part])) // 2)
    return ".".join(parts)


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # group order
ED25519_L = 2**252 + 27742317777372353535851937790883648493  # group order


def malleated(token: str) -> str:
    """The other valid spelling of an ES256 token: (r, s) -> (r, n - s), no key needed."""
    head, signature = token.rsplit(".", 1)
    raw = b64url_decode(signature)
    s = int.from_bytes(raw[32:], "big")
    return f"{head}.{b64url(raw[:32] + (P256_N - s).to_bytes(32, 'big'))}"


def ed25519_s_plus_l(token: str) -> str:
    """An Ed25519 signature with S + L: verifies in lax implementations (RFC 8032 says no)."""
    head, signature = token.rsplit(".", 1)
    raw = b64url_decode(signature)
    s = int.from_bytes(raw[32:], "little") + ED25519_L
    return f"{head}.{b64url(raw[:32] + s.to_bytes(32, 'little'))}"


def sign_raw(header: dict[str, object], payload_b64: str, sign: Callable[[bytes], bytes]) -> str:
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    return f"{head}.{payload_b64}.{b64url(sign(f'{head}.{payload_b64}'.encode()))}"


def hs256_with(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


# The cases -------------------------------------------------------------------------------------

Attack = Callable[[World], tuple[str, str]]  # -> (topic, token)


@dataclass(frozen=True)
class Case:
    name: str
    attack: Attack
    status: Status
    reason: str | None = None
    alerts: int = 0
    withhold: frozenset[Key] = frozenset()  # legitimate envelopes an attacker deleted
    #: B's epoch 1 missing ranges (first, last, status) before and after the attack message;
    #: every other case must leave every stream without missing ranges.
    missing: tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]] | None = None

    def __str__(self) -> str:
        return self.name


def q(name: str, reason: str, attack: Attack) -> Case:
    return Case(name, attack, Status.QUARANTINED, reason)


def _alg_none(w: World) -> tuple[str, str]:
    _, payload, _ = w.fresh_a().split(".")
    header = {**header_of(w.fresh_a()), "alg": "none"}
    return topic(GW_A), sign_raw(header, payload, lambda _: b"")


def _hs256_keyed_with(public: Callable[[World], bytes], kid: Callable[[World], str]) -> Attack:
    """The classic confusion: HMAC keyed with a public key the verifier holds."""
    def attack(w: World) -> tuple[str, str]:
        token = w.fresh_a()
        header = {**header_of(token), "alg": "HS256", "kid": kid(w)}
        return topic(GW_A), sign_raw(header, token.split(".")[1], hs256_with(public(w)))
    return attack


def _truncate_payload(w: World) -> tuple[str, str]:
    header, payload, signature = w.fresh_a().split(".")
    cut = len(payload) // 2 // 4 * 4  # a length that is still canonical base64url
    return topic(GW_A), f"{header}.{payload[:cut]}.{signature}"


def _altered_prev_by_revoked_key(w: World) -> tuple[str, str]:
    # A's stored 21..22 (the first after the rotation) with another prev, re-signed by the
    # old key, as someone holding it would to splice history.
    return topic(GW_A), w.a_epoch1(w.a_old.signer, 21, 22,
                                   prev=envelope_hash(w.token(GW_A, 1, 16)))


def _shorten_signature(w: World) -> tuple[str, str]:
    head, signature = w.fresh_a().rsplit(".", 1)
    # Cut on a 4-character boundary: any other cut is non-canonical base64url (malformed).
    return topic(GW_A), f"{head}.{signature[:len(signature) // 4 * 4 - 4]}"


def _deleted(first: int, last: int) -> frozenset[Key]:
    return frozenset((GW_B, 1, s) for s in range(first, last + 1))


M = "missing"

CASES: list[Case] = [
    # A byte changed on the way, in the signed payload or in the signature.
    q("flipped_payload_byte", "bad_signature", lambda w: (topic(GW_A), flip_part(w.fresh_a(), 1))),
    q("flipped_signature_byte", "bad_signature",
      lambda w: (topic(GW_A), flip_part(w.fresh_a(), 2))),
    q("flipped_byte_in_a_resent_stored_envelope", "bad_signature",
      lambda w: (topic(GW_B), flip_part(w.token(GW_B, 1, 5), 1))),
    q("flipped_byte_in_v1_payload", "bad_signature",
      lambda w: (topic(GW_B), flip_part(w.token(GW_B, 1, 3), 1))),
    # The gateway id: edited without the key, or signed by a gateway for another one.
    q("gateway_id_swapped_in_payload", "bad_signature",
      lambda w: (topic(GW_B), with_payload(w.fresh_a(), replace(envelope_of(w.fresh_a()),
                                                                 gateway=GW_B)))),
    q("gateway_id_swapped_and_signed_by_own_key_on_victims_topic", "gateway_mismatch",
      lambda w: (topic(GW_B), w.fresh_a(gateway=GW_B))),
    q("gateway_id_swapped_and_signed_by_own_key_on_own_topic", "gateway_mismatch",
      lambda w: (topic(GW_A), w.fresh_a(gateway=GW_B))),
    q("other_gateways_key_claiming_this_gateway", "gateway_mismatch",
      lambda w: (topic(GW_A), w.fresh_a(w.b.signer))),
    # Keys nobody enrolled.
    q("unknown_key", "unknown_key", lambda w: (topic(GW_A), w.fresh_a(w.attacker.signer))),
    q("kid_header_removed", "unknown_key",
      lambda w: (topic(GW_A), with_header(w.fresh_a(), kid=None))),
    # Another gateway's envelopes and checkpoints replayed on this gateway's topics.
    q("other_gateways_stored_envelope_replayed", "topic_mismatch",
      lambda w: (topic(GW_A), w.token(GW_B, 1, 7))),
    q("other_gateways_new_envelope_replayed", "topic_mismatch",
      lambda w: (topic(GW_A), w.b.seal(31))),
    q("other_gateways_checkpoint_replayed", "topic_mismatch",
      lambda w: (topic(GW_A, "checkpoint"), w.b.checkpoint(30))),
    q("topic_with_an_extra_level", "topic_mismatch",
      lambda w: (f"nengtan/v1/{GW_A}/x/batch", w.fresh_a())),
    q("topic_gateway_in_other_case", "topic_mismatch",
      lambda w: (topic(GW_A.upper()), w.fresh_a())),
    # An old epoch replayed: byte for byte it is a resend; re-signed it is a forgery.
    Case("old_epoch_replayed_byte_identical", lambda w: (topic(GW_A), w.token(GW_A, 1, 5)),
         Status.DUPLICATE),
    Case("old_epoch_replayed_byte_identical_old_key", lambda w: (topic(GW_A), w.token(GW_A, 1, 1)),
         Status.DUPLICATE),
    q("old_epoch_re_signed_by_attacker", "unknown_key",
      lambda w: (topic(GW_A), w.a_epoch1(w.attacker.signer, 5, 6))),
    q("old_epoch_re_signed_by_other_gateways_key", "gateway_mismatch",
      lambda w: (topic(GW_A), w.a_epoch1(w.b.signer, 5, 6))),
    q("old_epoch_re_signed_by_current_key", "replay_conflict",
      lambda w: (topic(GW_A), w.a_epoch1(w.a2.signer, 5, 6))),
    q("old_epoch_altered_by_revoked_key_before_its_point", "replay_conflict",
      lambda w: (topic(GW_A), w.a_epoch1(w.a_old.signer, 5, 6, values=[1.0, 2.0]))),
    q("stored_cycles_resealed_in_the_other_wire_version", "replay_conflict",
      lambda w: (topic(GW_A), w.fresh_a(seq=4, last=6))),  # stored as v1, this is v2
    # The revoked key after its revocation point.
    q("revoked_key_extends_its_epoch", "revoked_key",
      lambda w: (topic(GW_A), w.a_epoch1(w.a_old.signer, 31))),
    q("revoked_key_straddles_its_point", "revoked_key",
      lambda w: (topic(GW_A), w.a_epoch1(w.a_old.signer, 19, 21))),
    q("revoked_key_in_a_later_epoch", "revoked_key",
      lambda w: (topic(GW_A), w.fresh_a(w.a_old.signer))),
    q("prev_altered_and_re_signed_by_revoked_key", "revoked_key", _altered_prev_by_revoked_key),
    q("revoked_key_checkpoint_after_its_point", "revoked_key",
      lambda w: (topic(GW_A, "checkpoint"), w.a_old.checkpoint(30, epoch=1))),
    # The chain, by a holder of the current key.
    q("prev_altered_by_current_key", "chain_break",
      lambda w: (topic(GW_A), w.fresh_a(prev=envelope_hash(w.token(GW_A, 2, 3))))),
    q("overlapping_stored_cycles", "replay_conflict",
      lambda w: (topic(GW_A), w.fresh_a(seq=10, last=11))),
    q("forged_first_envelope_of_a_new_epoch_with_a_prev", "chain_break",
      lambda w: (topic(GW_A), Batches(w.a2.signer, GW_A).seal(
          1, epoch=3, prev=envelope_hash(w.token(GW_A, 2, 7))))),
    # Algorithm confusion and header games.
    q("alg_none", "unsupported_alg", _alg_none),
    q("hs256_keyed_with_the_ed25519_public_key", "bad_signature",
      _hs256_keyed_with(lambda w: w.a2.signer.public_bytes, lambda w: w.a2.signer.kid)),
    q("hs256_keyed_with_the_es256_public_key", "bad_signature",
      _hs256_keyed_with(lambda w: w.b_public, lambda w: w.b.signer.kid)),
    q("alg_renamed_eddsa", "bad_signature",
      lambda w: (topic(GW_A), with_header(w.fresh_a(), alg="EdDSA"))),
    q("kid_swapped_to_other_gateways_kid", "bad_signature",
      lambda w: (topic(GW_A), with_header(w.fresh_a(), kid=w.b.signer.kid))),
    q("kid_swapped_to_same_gateways_other_key", "bad_signature",
      lambda w: (topic(GW_A), with_header(w.fresh_a(), kid=w.a_old.signer.kid))),
    q("typ_swapped_to_wire_v1", "bad_signature",
      lambda w: (topic(GW_A), with_header(w.fresh_a(), typ="nengtan-batch+json"))),
    # Signature malleability: ECDSA has a second valid signature (r, n - s); only the low-s one
    # is accepted (nengtan.jws), so a re-spelled copy is no signature at all. Ed25519: S + L.
    q("es256_signature_malleated_on_a_stored_envelope", "bad_signature",
      lambda w: (topic(GW_B), malleated(w.token(GW_B, 1, 7)))),
    q("ed25519_signature_s_plus_l", "bad_signature",
      lambda w: (topic(GW_A), ed25519_s_plus_l(w.fresh_a()))),
    q("crit_header_added", "malformed",
      lambda w: (topic(GW_A), with_header(w.fresh_a(), crit=["exp"]))),
    # Truncated tokens.
    q("truncated_signature_dropped", "bad_signature",
      lambda w: (topic(GW_A), w.fresh_a().rsplit(".", 1)[0] + ".")),
    q("truncated_signature_shortened", "bad_signature", _shorten_signature),
    q("truncated_payload", "bad_signature", _truncate_payload),
    q("truncated_to_two_parts", "malformed",
      lambda w: (topic(GW_A), w.fresh_a().rsplit(".", 1)[0])),
    q("truncated_to_nothing", "malformed", lambda w: (topic(GW_A), "")),
    # Valid messages on the wrong kind of topic.
    q("batch_on_checkpoint_topic", "malformed",
      lambda w: (topic(GW_A, "checkpoint"), w.fresh_a())),
    q("stored_batch_on_checkpoint_topic", "malformed",
      lambda w: (topic(GW_B, "checkpoint"), w.token(GW_B, 1, 30))),
    q("checkpoint_on_batch_topic", "malformed",
      lambda w: (topic(GW_A), w.a2.checkpoint(10, epoch=2))),
    # Checkpoints that contradict what is stored: kept as evidence, with an alert.
    Case("checkpoint_contradicting_a_stored_envelope",
         lambda w: (topic(GW_A, "checkpoint"), w.a_new.checkpoint(30, head="Z" * 43, epoch=1)),
         Status.ACCEPTED, alerts=1),
    Case("checkpoint_ending_inside_a_stored_envelope",
         lambda w: (topic(GW_A, "checkpoint"), w.a2.checkpoint(5, head=envelope_hash(
             w.token(GW_A, 2, 4)), sealed=3, epoch=2)),
         Status.ACCEPTED, alerts=1),
    Case("revoked_key_checkpoint_before_its_point_contradicting",
         lambda w: (topic(GW_A, "checkpoint"), w.a_old.checkpoint(20, head="Y" * 43, epoch=1)),
         Status.ACCEPTED, alerts=1),
    # Envelopes deleted on the way: listed as missing, and the gateway's checkpoint tells.
    Case("ten_envelopes_deleted_from_the_middle",
         lambda w: (topic(GW_B, "checkpoint"), w.b.checkpoint(30)), Status.ACCEPTED,
         withhold=_deleted(11, 20), missing=([(11, 20, M)], [(11, 20, M)])),
    Case("ten_envelopes_deleted_from_the_end",
         lambda w: (topic(GW_B, "checkpoint"), w.b.checkpoint(30)), Status.ACCEPTED,
         withhold=_deleted(21, 30), missing=([], [(21, 30, M)])),
]


def stored_data(store: Store) -> object:
    """Everything an attack must not change: what was stored as data, and derived from it."""
    stats = store.stats()
    return (
        {t: stats[t] for t in ("envelopes", "readings", "counter_points", "rollups", "gaps",
                               "keys", "revocations")},
        list(store.counter_samples("active_energy_import")),
        [store.rollups(period) for period in ROLLUP_PERIODS],
        [(s.gateway, s.epoch, s.envelopes, s.stored_last) for s in store.streams()],
    )


def missing(store: Store) -> dict[tuple[str, int], list[tuple[int, int, str]]]:
    return {(gw, epoch): [(r.first, r.last, r.status) for r in store.missing_ranges(gw, epoch)]
            for gw, epoch in [(GW_A, 1), (GW_A, 2), (GW_B, 1)]}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_attack_is_rejected_or_flagged_and_changes_no_stored_data(
        case: Case, store: Store, tmp_path: Path) -> None:
    world = World.build(store, tmp_path / "gateways", case.withhold)
    data, counters = stored_data(store), store.counters()
    quarantine, alerts = store.quarantine_counts(), store.alerts(limit=100)
    gaps_before = missing(store)
    clean = {stream: [] for stream in gaps_before}
    if case.missing is not None:
        assert gaps_before == {**clean, (GW_B, 1): case.missing[0]}
    else:
        assert gaps_before == clean

    where, token = case.attack(world)
    outcome: Outcome = world.ingestor.ingest(where, token.encode())

    assert (outcome.status, outcome.reason, outcome.alerts) == (
        case.status, case.reason, case.alerts), outcome.detail
    assert outcome.status != Status.ACCEPTED or outcome.kind == "checkpoint", "accepted as data"
    assert outcome.readings == 0
    assert stored_data(store) == data
    if case.status == Status.QUARANTINED:
        [kept] = store.quarantined(limit=1)
        assert (kept.id, kept.reason, kept.topic, kept.payload) == (
            outcome.quarantine_id, case.reason, where, token.encode())
        assert store.quarantine_counts() == {**quarantine, kept.reason: 1}
    else:
        assert store.quarantine_counts() == quarantine
    if case.status == Status.DUPLICATE:
        assert store.counters() == {**counters, "duplicate": counters.get("duplicate", 0) + 1}
    else:
        assert store.counters() == counters
    after = store.alerts(limit=100)  # newest first
    new_alerts = after[:len(after) - len(alerts)]
    assert [(a.kind, a.gateway) for a in new_alerts] == [(CHECKPOINT_CONFLICT, GW_A)] * case.alerts
    if case.missing is not None:
        assert missing(store) == {**clean, (GW_B, 1): case.missing[1]}
        # The checkpoint counts what the gateway sealed: exactly the deleted ten are absent.
        [stream] = store.streams(GW_B)
        assert (stream.checkpoint_last, stream.checkpoint_sealed - stream.envelopes) == (30, 10)
    else:
        assert missing(store) == clean


def test_the_carriers_of_the_attacks_are_genuine(store: Store, tmp_path: Path) -> None:
    """The untampered message each attack starts from would be accepted: the rejections above
    are the tampering's doing."""
    world = World.build(store, tmp_path / "gateways", frozenset())
    checkpoint = world.a2.checkpoint(10, epoch=2)
    assert world.ingestor.ingest(topic(GW_A, "checkpoint"), checkpoint.encode()).alerts == 0
    for where, token in [(topic(GW_B), world.b.seal(31)), (topic(GW_A), world.fresh_a())]:
        outcome = world.ingestor.ingest(where, token.encode())
        assert outcome.status == Status.ACCEPTED, outcome
    assert store.quarantine_counts() == {}


def test_a_malleated_es256_copy_that_arrives_first_is_rejected(
        store: Store, tmp_path: Path) -> None:
    """Anyone can re-spell an ES256 signature as (r, n - s). Signers emit only the low-s
    spelling and the receiver accepts only that one, so a re-spelled copy that beats the
    genuine envelope is refused and cannot take its place in the chain."""
    world = World.build(store, tmp_path / "gateways", frozenset())
    genuine, successor = world.b.seal(31), world.b.seal(32)
    twin = malleated(genuine)
    assert twin != genuine and envelope_hash(twin) != envelope_hash(genuine)

    first = world.ingestor.ingest(topic(GW_B), twin.encode())
    assert (first.status, first.reason) == (Status.QUARANTINED, "bad_signature")
    for token in (genuine, successor):
        outcome = world.ingestor.ingest(topic(GW_B), token.encode())
        assert (outcome.status, outcome.reason) == (Status.ACCEPTED, None), outcome.detail
    checkpoint = world.ingestor.ingest(topic(GW_B, "checkpoint"), world.b.checkpoint(32).encode())
    assert checkpoint.alerts == 0
    values = [(s.seq, s.value) for s in store.counter_samples("active_energy_import")
              if s.gateway == GW_B]
    assert values == [(seq, 100.0 + seq) for seq in range(1, 33)]
