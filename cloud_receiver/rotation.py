"""Applying a key rotation record (docs/keys.md) and revoking keys: the receiver's key lifecycle.

A rotation enrols the new key and revokes the old one from the record's point, so envelopes
the old key sealed before the point (a backlog still on its way) are accepted and anything the
old key signs from the point on is quarantined ``revoked_key``. Every check runs before the first
write, so a bad record changes nothing. The two writes are separate store transactions, enrol
first: after a crash between them the new key is enrolled and the old one still valid, and
applying the record again finishes the job (every step is safe to repeat).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cloud_receiver.store import EnrolledKey, Revocation, Store
from nengtan.jws import VerificationKey
from nengtan.rotation import KeyLifecycleError, RotationRecord, parse_rotation

#: Subdirectory of the registry directory that keeps a copy of every applied record: outside
#: the ``*.json`` scan of the directory itself, and the audit trail points at it.
ARCHIVE_DIR = "rotations"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RotationResult:
    source: str
    gateway: str
    old_kid: str
    new_kid: str
    alg: str
    from_epoch: int
    from_seq: int
    enrolled: bool  # the new key was new to the store
    revoked: bool  # the old key's revocation point was set or moved earlier

    @property
    def changed(self) -> bool:
        return self.enrolled or self.revoked


def read_rotation(path: Path) -> RotationRecord:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyLifecycleError(f"{path}: cannot read the rotation record: {exc}") from exc
    return parse_rotation(text, str(path))


def _check_against_store(store: Store, record: RotationRecord) -> bool:
    """Raise KeyLifecycleError unless ``record`` may be applied; True if it already was."""
    p, source = record.payload, record.source
    enrolled = store.keys()
    keys = {k.kid: k for k in enrolled}
    old = keys.get(p.old_kid)
    if old is None:
        raise KeyLifecycleError(f"{source}: the old key {p.old_kid} is not enrolled (enrol it "
                                "first, or apply the rotation that introduced it)")
    if old.gateway != p.gateway:
        raise KeyLifecycleError(f"{source}: the old key {p.old_kid} is enrolled for gateway "
                                f"{old.gateway!r}, but the record is for {p.gateway!r}")
    if not record.verify_old(VerificationKey(old.kid, old.alg, old.material)):
        raise KeyLifecycleError(f"{source}: the old key's signature ({p.old_kid}) does not verify")
    new = keys.get(p.new.kid)
    if new is not None and new.gateway != p.gateway:
        raise KeyLifecycleError(f"{source}: the new key {p.new.kid} is already enrolled for "
                                f"gateway {new.gateway!r}, not {p.gateway!r}")
    revoked = next(((r.epoch, r.seq) for r in store.revocations() if r.kid == p.old_kid), None)
    if revoked is not None and revoked <= p.point:
        if new is not None:
            return True  # applied before (the point may have been moved earlier since)
        # A key revoked (or rotated away) from a point on may not authorise anything after it,
        # or whoever stole a retired key could enrol a key of their own.
        raise KeyLifecycleError(f"{source}: the old key {p.old_kid} is already revoked from epoch "
                                f"{revoked[0]} seq {revoked[1]}, so it cannot authorise a rotation "
                                f"from epoch {p.from_epoch} seq {p.from_seq}")
    return False


def _archive(path: Path, record: RotationRecord, archive_dir: Path) -> Path:
    p = record.payload
    target = archive_dir / f"{p.gateway}.{p.old_kid}.{p.new.kid}.{p.from_epoch}-{p.from_seq}.json"
    try:
        archive_dir.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(path, tmp)
            os.chmod(tmp, 0o600)  # an HS256 rotation carries the new secret
            os.replace(tmp, target)
    except OSError as exc:
        raise KeyLifecycleError(f"cannot copy {path} into {archive_dir}: {exc}") from exc
    return target


def apply_rotation(store: Store, path: Path, *, archive_dir: Path | None = None) -> RotationResult:
    """Check the record at ``path`` and apply it: enrol the new key (audited ``rotated``) and
    revoke the old one from the record's point (reason ``rotated``). With ``archive_dir`` the
    record is first copied there and the audit trail names the copy. Safe to re-run.

    Raise KeyLifecycleError (an IdentityError) naming the file and the defect, with nothing
    changed, if the record is malformed, either signature fails, the two signatures cover
    different payloads, or the old key is not enrolled for that gateway or already revoked at
    or before the point (unless the new key is enrolled too: the record was applied before).
    """
    path = Path(path)
    record = read_rotation(path)
    p = record.payload
    result = RotationResult(str(path), p.gateway, p.old_kid, p.new.kid, p.new.alg, p.from_epoch,
                            p.from_seq, enrolled=False, revoked=False)
    if _check_against_store(store, record):
        return result
    source = str(_archive(path, record, archive_dir)) if archive_dir else str(path)
    enrolled = store.add_key(
        EnrolledKey(p.new.kid, p.gateway, p.new.alg, p.new.material, p.at, source),
        event="rotated",
        detail=f"{p.new.alg}, replaces {p.old_kid} from epoch {p.from_epoch} seq {p.from_seq}")
    revoked = store.revoke_key(Revocation(p.old_kid, p.gateway, p.from_epoch, p.from_seq,
                                          "rotated", now_iso(), source))
    return RotationResult(str(path), p.gateway, p.old_kid, p.new.kid, p.new.alg, p.from_epoch,
                          p.from_seq, enrolled=enrolled, revoked=revoked)


@dataclass(frozen=True)
class RevokeResult:
    kid: str
    gateway: str
    changed: bool
    epoch: int  # the point in force afterwards (an earlier one already recorded wins)
    seq: int
    reason: str


def revoke(store: Store, kid: str, *, epoch: int, seq: int, reason: str,
           source: str) -> RevokeResult:
    """Revoke ``kid`` from cycle ``(epoch, seq)`` of its gateway on. Safe to re-run: a point
    already recorded earlier is kept (a revocation only ever moves earlier)."""
    if epoch < 1 or seq < 1:
        raise KeyLifecycleError(f"the revocation point must be epoch >= 1 and seq >= 1, not "
                                f"epoch {epoch} seq {seq}")
    if not reason.strip():
        raise KeyLifecycleError("give a reason for the revocation (it goes into the audit trail)")
    enrolled = store.keys()
    owner = next((k.gateway for k in enrolled if k.kid == kid), None)
    if owner is None:
        raise KeyLifecycleError(f"key {kid} is not enrolled (see `nengtan receiver keys list`)")
    changed = store.revoke_key(Revocation(kid, owner, epoch, seq, reason.strip(), now_iso(),
                                          source))
    current = next(r for r in store.revocations() if r.kid == kid)
    return RevokeResult(kid, owner, changed, current.epoch, current.seq, current.reason)
