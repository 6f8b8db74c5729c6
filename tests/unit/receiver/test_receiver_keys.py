"""Key lifecycle on the receiver: rotation records signed by the old and the new key, revocation
from a cycle on, the audit trail and the `nengtan receiver keys` commands. Real keys and real
envelopes; no sockets."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from receiver_helpers import CHECKPOINT_TOPIC, GATEWAY, TOPIC, Batches, enrollment_record, new_signer

from cloud_receiver.cli import receiver
from cloud_receiver.config import load_config
from cloud_receiver.ingest import Ingestor, Status
from cloud_receiver.registry import Registry
from cloud_receiver.rotation import apply_rotation, revoke
from cloud_receiver.store import EnrolledKey, Store, open_store
from nengtan.errors import IdentityError
from nengtan.jws import Ed25519Signer, ES256Signer, HS256Signer, b64url, b64url_decode
from nengtan.rotation import KeySigner, dump_rotation, new_payload, sign_rotation

AT = "2025-06-02T08:00:00+08:00"


def write_rotation(path: Path, old: KeySigner, new: KeySigner, *, epoch: int = 1, seq: int = 6,
                   gateway: str = GATEWAY) -> Path:
    payload = new_payload(gateway=gateway, old_kid=old.kid, new=new, from_epoch=epoch,
                          from_seq=seq, at=AT)
    path.write_text(dump_rotation(sign_rotation(payload, old, new)))
    return path


def enrolled(store: Store) -> dict[str, EnrolledKey]:
    found = store.keys()
    return {k.kid: k for k in found}


def snapshot(store: Store) -> tuple[object, ...]:
    return (sorted(enrolled(store)), store.revocations(),
            [(e.event, e.kid) for e in store.key_events()])


def make_signer(alg: str) -> KeySigner:
    if alg == "Ed25519":
        return new_signer()
    if alg == "ES256":
        return ES256Signer(ec.generate_private_key(ec.SECP256R1()))
    return HS256Signer(os.urandom(32))


def enroll(store: Store, signer: KeySigner, gateway: str = GATEWAY) -> None:
    key = signer.verification_key()
    assert store.add_key(EnrolledKey(key.kid, gateway, key.alg, key.material, AT, "test"))


# -- rotation -------------------------------------------------------------------------------------

def test_rotation_keeps_the_old_keys_backlog_and_moves_signing_to_the_new_key(
        store: Store, registry: Registry, ingestor: Ingestor, batches: Batches,
        signer: Ed25519Signer, tmp_path: Path) -> None:
    backlog = [batches.seal(1, 3), batches.seal(4, 5)]  # sealed before the rotation, not yet sent
    old_checkpoint = batches.checkpoint(5)
    stolen = Batches(signer, chain=dict(batches.chain))  # the old key, used past the point
    late_old = stolen.seal(6, 7)
    late_old_checkpoint = stolen.checkpoint(7)
    new = new_signer()
    record = write_rotation(tmp_path / "rot.json", signer, new, seq=6)

    result = apply_rotation(store, record)
    registry.refresh()  # the service does this every few seconds

    assert (result.enrolled, result.revoked, result.changed) == (True, True, True)
    assert [ingestor.ingest(TOPIC, t.encode()).status for t in backlog] == [Status.ACCEPTED] * 2
    assert ingestor.ingest(CHECKPOINT_TOPIC, old_checkpoint.encode()).status == Status.ACCEPTED
    for token, topic in ((late_old, TOPIC), (late_old_checkpoint, CHECKPOINT_TOPIC)):
        outcome = ingestor.ingest(topic, token.encode())
        assert (outcome.status, outcome.reason) == (Status.QUARANTINED, "revoked_key")
        assert "revoked from epoch 1 seq 6" in outcome.detail
    batches.signer = new  # the gateway's next envelopes, chained onto the old key's
    assert ingestor.ingest(TOPIC, batches.seal(6, 7).encode()).status == Status.ACCEPTED
    assert ingestor.ingest(TOPIC, batches.seal(8).encode()).status == Status.ACCEPTED
    assert ingestor.ingest(CHECKPOINT_TOPIC, batches.checkpoint(8).encode()).status == Status.ACCEPTED
    assert store.stats()["readings"] == 8
    [revocation] = store.revocations()
    assert (revocation.kid, revocation.epoch, revocation.seq, revocation.reason) == (
        signer.kid, 1, 6, "rotated")
    new_key = enrolled(store)[new.kid]
    assert (new_key.gateway, new_key.alg, new_key.enrolled_at) == (GATEWAY, "Ed25519", AT)


def test_applying_the_same_record_again_changes_nothing(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path) -> None:
    record = write_rotation(tmp_path / "rot.json", signer, new_signer())
    assert apply_rotation(store, record).changed
    before = snapshot(store)
    again = apply_rotation(store, record)
    assert (again.enrolled, again.revoked, again.changed) == (False, False, False)
    assert snapshot(store) == before


def test_a_record_applied_before_stays_a_no_op_after_the_point_was_moved_earlier(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path) -> None:
    record = write_rotation(tmp_path / "rot.json", signer, new_signer(), seq=6)
    apply_rotation(store, record)
    revoke(store, signer.kid, epoch=1, seq=2, reason="leaked earlier than thought", source="test")
    before = snapshot(store)
    assert not apply_rotation(store, record).changed
    assert snapshot(store) == before


def test_a_rotation_half_applied_before_a_crash_is_finished_by_applying_it_again(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path) -> None:
    new = new_signer()
    record = write_rotation(tmp_path / "rot.json", signer, new)
    enroll(store, new)  # the enrolment went through, the revocation did not
    result = apply_rotation(store, record)
    assert (result.enrolled, result.revoked) == (False, True)
    assert [(r.kid, r.seq) for r in store.revocations()] == [(signer.kid, 6)]


def _doc(path: Path) -> dict[str, str]:
    return dict(json.loads(path.read_text()))


def _only_old(path: Path, old: KeySigner, new: KeySigner) -> None:
    doc = _doc(path)
    del doc["signed_by_new"]
    path.write_text(json.dumps(doc))


def _only_new(path: Path, old: KeySigner, new: KeySigner) -> None:
    doc = _doc(path)
    del doc["signed_by_old"]
    path.write_text(json.dumps(doc))


def _old_signs_twice(path: Path, old: KeySigner, new: KeySigner) -> None:
    doc = _doc(path)
    doc["signed_by_new"] = doc["signed_by_old"]
    path.write_text(json.dumps(doc))


def _tampered_one(path: Path, old: KeySigner, new: KeySigner) -> None:
    doc = _doc(path)
    header, payload, signature = doc["signed_by_new"].split(".")
    moved = b64url_decode(payload).replace(b'"from_seq":6', b'"from_seq":60')
    doc["signed_by_new"] = ".".join([header, b64url(moved), signature])
    path.write_text(json.dumps(doc))


def _tampered_both(path: Path, old: KeySigner, new: KeySigner) -> None:
    doc = _doc(path)
    for name in ("signed_by_old", "signed_by_new"):
        header, payload, signature = doc[name].split(".")
        moved = b64url_decode(payload).replace(b'"from_seq":6', b'"from_seq":60')
        doc[name] = ".".join([header, b64url(moved), signature])
    path.write_text(json.dumps(doc))


def _forged_old(path: Path, old: KeySigner, new: KeySigner) -> None:
    """Someone without the old key signs with a key of their own under the old kid."""
    forger = new_signer()
    forger.kid = old.kid
    payload = new_payload(gateway=GATEWAY, old_kid=old.kid, new=new, from_epoch=1, from_seq=6,
                          at=AT)
    path.write_text(dump_rotation(sign_rotation(payload, forger, new)))


def _unknown_old(path: Path, old: KeySigner, new: KeySigner) -> None:
    write_rotation(path, new_signer(), new)


def _wrong_gateway(path: Path, old: KeySigner, new: KeySigner) -> None:
    write_rotation(path, old, new, gateway="gw-other")


def _not_json(path: Path, old: KeySigner, new: KeySigner) -> None:
    path.write_text("{")


@pytest.mark.parametrize(("defect", "message"), [
    (_only_old, "signed_by_new is missing"),
    (_only_new, "signed_by_old is missing"),
    (_old_signs_twice, "signed_by_new is signed by key"),
    (_tampered_one, "the two signatures cover different payloads"),
    (_tampered_both, "the new key's signature .* does not verify"),
    (_forged_old, "the old key's signature .* does not verify"),
    (_unknown_old, "the old key .* is not enrolled"),
    (_wrong_gateway, "is enrolled for gateway 'gw-zz-01', but the record is for 'gw-other'"),
    (_not_json, "not JSON"),
], ids=lambda v: getattr(v, "__name__", "")[1:])
def test_a_defective_record_is_rejected_naming_the_file_and_nothing_changes(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path,
        defect: Callable[[Path, KeySigner, KeySigner], None], message: str) -> None:
    new = new_signer()
    path = write_rotation(tmp_path / "rot.json", signer, new)
    defect(path, signer, new)
    before = snapshot(store)
    with pytest.raises(IdentityError, match=rf"^{re.escape(str(path))}: .*{message}"):
        apply_rotation(store, path, archive_dir=tmp_path / "rotations")
    assert snapshot(store) == before
    assert not (tmp_path / "rotations").exists()


def test_a_key_already_revoked_before_the_point_cannot_authorise_a_rotation(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path) -> None:
    revoke(store, signer.kid, epoch=1, seq=3, reason="key leaked", source="test")
    path = write_rotation(tmp_path / "rot.json", signer, new_signer(), seq=6)
    before = snapshot(store)
    with pytest.raises(IdentityError, match="already revoked from epoch 1 seq 3"):
        apply_rotation(store, path)
    assert snapshot(store) == before


def test_a_retired_key_cannot_rotate_to_a_second_new_key_at_the_same_point(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path) -> None:
    apply_rotation(store, write_rotation(tmp_path / "a.json", signer, new_signer()))
    with pytest.raises(IdentityError, match="already revoked from epoch 1 seq 6"):
        apply_rotation(store, write_rotation(tmp_path / "b.json", signer, new_signer()))


def test_rotations_chain_and_a_later_record_moves_a_manual_revocation_earlier(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path) -> None:
    second, third = new_signer(), new_signer()
    apply_rotation(store, write_rotation(tmp_path / "1.json", signer, second, seq=6))
    revoke(store, second.kid, epoch=2, seq=1, reason="planned", source="test")
    apply_rotation(store, write_rotation(tmp_path / "2.json", second, third, seq=50))
    assert {(r.kid, r.epoch, r.seq, r.reason) for r in store.revocations()} == {
        (signer.kid, 1, 6, "rotated"), (second.kid, 1, 50, "rotated")}


@pytest.mark.parametrize(("old_alg", "new_alg"), [
    ("Ed25519", "ES256"), ("ES256", "HS256"), ("HS256", "Ed25519"), ("HS256", "HS256")])
def test_es256_and_hs256_keys_rotate_too(store: Store, tmp_path: Path, old_alg: str,
                                         new_alg: str) -> None:
    old, new = make_signer(old_alg), make_signer(new_alg)
    enroll(store, old)
    registry = Registry(store, tmp_path / "empty")
    ingestor = Ingestor(store, registry)
    batches = Batches(old)  # type: ignore[arg-type]
    backlog = batches.seal(1, 5)
    apply_rotation(store, write_rotation(tmp_path / "rot.json", old, new, seq=6))
    registry.refresh()
    late = Batches(old, chain=dict(batches.chain)).seal(6)  # type: ignore[arg-type]
    assert ingestor.ingest(TOPIC, backlog.encode()).status == Status.ACCEPTED
    assert ingestor.ingest(TOPIC, late.encode()).reason == "revoked_key"
    batches.signer = new  # type: ignore[assignment]
    assert ingestor.ingest(TOPIC, batches.seal(6).encode()).status == Status.ACCEPTED
    assert enrolled(store)[new.kid].alg == new_alg


def test_an_hs256_rotation_is_archived_readable_by_its_owner_only(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path) -> None:
    path = write_rotation(tmp_path / "rot.json", signer, make_signer("HS256"))
    result = apply_rotation(store, path, archive_dir=tmp_path / "reg" / "rotations")
    [kept] = (tmp_path / "reg" / "rotations").iterdir()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_bytes() == path.read_bytes()
    assert {e.source for e in store.key_events() if e.event != "enrolled"} == {str(kept)}
    assert result.source == str(path)


# -- revocation -----------------------------------------------------------------------------------

def test_revocation_from_a_seq_keeps_what_came_before_and_rejects_the_rest(
        store: Store, registry: Registry, ingestor: Ingestor, batches: Batches,
        signer: Ed25519Signer) -> None:
    tokens = {"1-3": batches.seal(1, 3), "4-5": batches.seal(4, 5), "6": batches.seal(6)}
    result = revoke(store, signer.kid, epoch=1, seq=5, reason="gateway stolen", source="test")
    registry.refresh()
    assert (result.changed, result.gateway, result.epoch, result.seq) == (True, GATEWAY, 1, 5)
    outcomes = {name: ingestor.ingest(TOPIC, t.encode()) for name, t in tokens.items()}
    assert outcomes["1-3"].status == Status.ACCEPTED
    assert [outcomes[n].reason for n in ("4-5", "6")] == ["revoked_key", "revoked_key"]
    next_epoch = ingestor.ingest(TOPIC, Batches(signer).seal(1, epoch=2).encode())
    assert next_epoch.reason == "revoked_key"


def test_a_revocation_in_a_later_epoch_keeps_the_earlier_epoch_valid(
        store: Store, registry: Registry, ingestor: Ingestor, batches: Batches,
        signer: Ed25519Signer) -> None:
    revoke(store, signer.kid, epoch=2, seq=1, reason="replaced", source="test")
    registry.refresh()
    assert ingestor.ingest(TOPIC, batches.seal(1, 900).encode()).status == Status.ACCEPTED


def test_a_later_revocation_never_moves_the_point_later_an_earlier_one_does(
        store: Store, registry: Registry, signer: Ed25519Signer) -> None:
    revoke(store, signer.kid, epoch=1, seq=100, reason="first", source="test")
    later = revoke(store, signer.kid, epoch=1, seq=200, reason="second", source="test")
    assert (later.changed, later.epoch, later.seq, later.reason) == (False, 1, 100, "first")
    earlier = revoke(store, signer.kid, epoch=1, seq=50, reason="third", source="test")
    assert (earlier.changed, earlier.epoch, earlier.seq, earlier.reason) == (True, 1, 50, "third")
    [r] = store.revocations()
    assert (r.epoch, r.seq) == (1, 50)


@pytest.mark.parametrize(("kid", "epoch", "seq", "reason", "message"), [
    ("ed25519-nosuchkey00000", 1, 1, "x", "is not enrolled"),
    (None, 0, 1, "x", "epoch >= 1"),
    (None, 1, 1, "  ", "give a reason"),
])
def test_a_bad_revocation_is_refused(store: Store, registry: Registry, signer: Ed25519Signer,
                                     kid: str | None, epoch: int, seq: int, reason: str,
                                     message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        revoke(store, kid or signer.kid, epoch=epoch, seq=seq, reason=reason, source="test")
    assert store.revocations() == []


def test_the_audit_trail_lists_enrolment_rotation_and_revocations_in_order(
        store: Store, registry: Registry, signer: Ed25519Signer, tmp_path: Path) -> None:
    new = new_signer()
    apply_rotation(store, write_rotation(tmp_path / "rot.json", signer, new, seq=6))
    revoke(store, new.kid, epoch=3, seq=1, reason="decommissioned", source="operator")
    events = store.key_events()
    assert [(e.event, e.kid) for e in events] == [
        ("enrolled", signer.kid), ("rotated", new.kid), ("revoked", signer.kid),
        ("revoked", new.kid)]
    assert f"replaces {signer.kid} from epoch 1 seq 6" in events[1].detail
    assert events[2].detail == "from epoch 1 seq 6: rotated"
    assert events[3].detail == "from epoch 3 seq 1: decommissioned"
    assert events[3].source == "operator"
    assert [e.id for e in events] == sorted(e.id for e in events)


# -- CLI ------------------------------------------------------------------------------------------

@pytest.fixture
def config_file(tmp_path: Path, signer: Ed25519Signer) -> Path:
    (tmp_path / "gateways").mkdir()
    path = tmp_path / "receiver.toml"
    path.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n')
    record = tmp_path / "gw.enroll.json"
    record.write_text(json.dumps(enrollment_record(signer, GATEWAY)))
    result = CliRunner().invoke(receiver, ["enroll", "--config", str(path), str(record)])
    assert result.exit_code == 0, result.output
    return path


def keys_cli(config_file: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(receiver, ["keys", args[0], "--config", str(config_file),
                                           *args[1:]])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("name", ["list", "revoke", "rotate", "audit"])
def test_every_keys_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(receiver, ["keys", name, "-h"])
    assert result.exit_code == 0 and "Example:" in result.output


def test_cli_rotate_list_and_audit_as_json(config_file: Path, signer: Ed25519Signer,
                                           tmp_path: Path) -> None:
    new = new_signer()
    record = write_rotation(tmp_path / "rot.json", signer, new, seq=6)

    code, out, _ = keys_cli(config_file, "rotate", str(record), "--json")
    assert code == 0, out
    [applied] = json.loads(out)["files"]
    assert (applied["new_kid"], applied["old_kid"], applied["changed"]) == (new.kid, signer.kid, True)
    code, out, _ = keys_cli(config_file, "rotate", str(record), "--json")
    assert code == 0 and json.loads(out)["files"][0]["changed"] is False
    kept = list((tmp_path / "gateways" / "rotations").iterdir())
    assert len(kept) == 1 and stat.S_IMODE(kept[0].stat().st_mode) == 0o600

    code, out, _ = keys_cli(config_file, "list", "--json")
    listed = {k["kid"]: k for k in json.loads(out)["keys"]}
    assert code == 0 and set(listed) == {signer.kid, new.kid}
    assert listed[new.kid]["revoked_from"] is None
    assert {k: listed[signer.kid]["revoked_from"][k] for k in ("epoch", "seq", "reason")} == {
        "epoch": 1, "seq": 6, "reason": "rotated"}

    code, out, _ = keys_cli(config_file, "audit", "--json", "--gateway", GATEWAY)
    assert code == 0
    assert [(e["event"], e["kid"]) for e in json.loads(out)["events"]] == [
        ("enrolled", signer.kid), ("rotated", new.kid), ("revoked", signer.kid)]
    code, out, _ = keys_cli(config_file, "audit", "--json", "--gateway", "gw-other")
    assert code == 0 and json.loads(out)["events"] == []


def test_cli_revoke_text_and_json(config_file: Path, signer: Ed25519Signer) -> None:
    code, out, _ = keys_cli(config_file, "revoke", "--kid", signer.kid, "--from-epoch", "2",
                            "--from-seq", "10", "--reason", "gateway stolen")
    assert code == 0 and f"revoked {signer.kid} ({GATEWAY}) from epoch 2 seq 10" in out
    code, out, _ = keys_cli(config_file, "revoke", "--kid", signer.kid, "--from-epoch", "3",
                            "--from-seq", "1", "--reason", "again", "--json")
    assert code == 0
    assert json.loads(out) == {"kid": signer.kid, "gateway": GATEWAY, "changed": False,
                               "epoch": 2, "seq": 10, "reason": "gateway stolen"}
    code, out, _ = keys_cli(config_file, "list")
    assert code == 0 and "revoked from epoch 2 seq 10 (gateway stolen)" in out
    code, out, _ = keys_cli(config_file, "audit")
    assert code == 0 and "revoked" in out and "nengtan receiver keys revoke, by " in out


def test_cli_bad_input_exits_nonzero_and_names_the_defect(
        config_file: Path, signer: Ed25519Signer, tmp_path: Path) -> None:
    good = write_rotation(tmp_path / "good.json", signer, new_signer(), seq=6)
    bad = write_rotation(tmp_path / "bad.json", signer, new_signer(), seq=9)
    _only_old(bad, signer, signer)

    code, out, err = keys_cli(config_file, "rotate", str(good), str(bad), "--json")
    assert code == 1
    doc = json.loads(out)
    assert [f["changed"] for f in doc["files"]] == [True]  # the good one before it stays applied
    assert "bad.json" in doc["error"] and "signed_by_new is missing" in err

    code, _, err = keys_cli(config_file, "revoke", "--kid", "ed25519-nosuchkey00000",
                            "--from-epoch", "1", "--from-seq", "1", "--reason", "x")
    assert code == 1 and "is not enrolled" in err
    code, _, err = keys_cli(config_file, "revoke", "--kid", signer.kid, "--from-epoch", "1",
                            "--from-seq", "0", "--reason", "x")
    assert code == 2 and "--from-seq" in err


def test_cli_without_a_database_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "receiver.toml"
    config.write_text('[storage]\npath = "r.db"\n[registry]\ndir = "gateways"\n')
    code, _, err = keys_cli(config, "list")
    assert code == 1 and "no receiver database" in err
    assert not load_config(config).storage_path.exists()


def test_cli_list_and_audit_text(config_file: Path, signer: Ed25519Signer) -> None:
    code, out, _ = keys_cli(config_file, "list")
    assert code == 0 and signer.kid in out and "valid" in out
    code, out, _ = keys_cli(config_file, "audit", "--gateway", "gw-nobody")
    assert code == 0 and "no key events for gateway gw-nobody" in out
    store = open_store(load_config(config_file).storage_path)
    try:
        assert [e.event for e in store.key_events()] == ["enrolled"]
    finally:
        store.close()
