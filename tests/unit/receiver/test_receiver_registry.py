"""The registry: enrollment records checked, imported idempotently, bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from receiver_helpers import GATEWAY, enrollment_record, new_signer

from cloud_receiver.registry import Registry, parse_record
from cloud_receiver.store import Store
from nengtan.errors import IdentityError
from nengtan.jws import ES256Signer, HS256Signer, b64url


def write(path: Path, record: dict[str, str]) -> Path:
    path.write_text(json.dumps(record))
    return path


def test_a_record_whose_kid_does_not_match_its_key_is_rejected_naming_the_file(
        tmp_path: Path) -> None:
    record = {**enrollment_record(new_signer(), "gw-a"), "kid": new_signer().kid}
    path = write(tmp_path / "gw-a.json", record)
    with pytest.raises(IdentityError, match=r"gw-a\.json: kid .* does not match the key"):
        parse_record(path.read_text(), str(path))


@pytest.mark.parametrize("change", [
    {"alg": "RS256"}, {"gateway": "../etc"}, {"public_key": "not base64!"},
    {"enrolled_at": "yesterday"}, {"public_key": b64url(b"short")},
])
def test_defective_records_are_rejected(change: dict[str, str]) -> None:
    with pytest.raises(IdentityError, match=r"^rec\.json: "):
        parse_record(json.dumps({**enrollment_record(new_signer(), "gw-a"), **change}), "rec.json")


def test_es256_and_hs256_records_are_accepted() -> None:
    es = ES256Signer(ec.generate_private_key(ec.SECP256R1()))
    es_record = {"gateway": "gw-es", "alg": "ES256", "kid": es.kid,
                 "public_key": b64url(es.public_bytes), "enrolled_at": "2025-06-01T00:00:00Z"}
    assert parse_record(json.dumps(es_record), "es.json").alg == "ES256"
    secret = bytes(range(32))
    hs_record = {"gateway": "gw-hs", "alg": "HS256", "kid": HS256Signer(secret).kid,
                 "public_key": b64url(secret), "enrolled_at": "2025-06-01T00:00:00Z"}
    assert parse_record(json.dumps(hs_record), "hs.json").material == secret


def test_reloading_is_idempotent(store: Store, registry_dir: Path) -> None:
    registry = Registry(store, registry_dir)
    assert len(registry.reload().added) == 1
    assert registry.reload().added == ()
    assert store.stats()["keys"] == 1


def test_one_bad_file_is_reported_and_the_others_still_load(
        store: Store, registry_dir: Path) -> None:
    (registry_dir / "broken.json").write_text("{not json")
    result = Registry(store, registry_dir).reload()
    assert len(result.added) == 1
    [error] = result.errors
    assert "broken.json" in error


def test_reload_if_due_scans_at_most_once_per_interval(store: Store, registry_dir: Path) -> None:
    now = [0.0]
    registry = Registry(store, registry_dir, clock=lambda: now[0])
    assert registry.reload_if_due()
    now[0] = 4.9
    assert not registry.reload_if_due()
    now[0] = 5.0
    assert registry.reload_if_due()


def test_enroll_file_copies_the_record_and_is_safe_to_rerun(store: Store, tmp_path: Path) -> None:
    signer = new_signer()
    incoming = write(tmp_path / "from-technician.json", enrollment_record(signer, "gw-new"))
    registry = Registry(store, tmp_path / "registry")
    assert registry.enroll_file(incoming) is True
    assert registry.enroll_file(incoming) is False
    assert registry.gateway_of(signer.kid) == "gw-new"
    copied = tmp_path / "registry" / f"gw-new.{signer.kid}.json"
    assert json.loads(copied.read_text())["kid"] == signer.kid
    assert copied.stat().st_mode & 0o077 == 0


def test_a_key_already_enrolled_for_another_gateway_is_refused(
        store: Store, registry_dir: Path, tmp_path: Path) -> None:
    registry = Registry(store, registry_dir)
    registry.reload()
    [kid] = registry.keys()
    taken = json.loads(next(registry_dir.glob("*.json")).read_text())
    thief = write(tmp_path / "thief.json", {**taken, "gateway": "gw-thief"})
    with pytest.raises(IdentityError, match=f"already enrolled for gateway '{GATEWAY}'"):
        registry.enroll_file(thief)
    assert registry.gateway_of(kid) == GATEWAY
