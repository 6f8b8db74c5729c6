"""The gateway registry: which key (kid) belongs to which gateway.

Enrollment records are JSON files dropped into a directory by the technician's
``nengtan provision enroll``; they are imported into the database, which is what ingest trusts.
The directory is rescanned when an envelope names a kid we do not know (a gateway enrolled after
the receiver started), at most once per ``min_reload_interval_s`` so a flood of forged kids cannot
turn into a flood of directory scans.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cloud_receiver.store import EnrolledKey, Store
from nengtan.envelope import valid_id
from nengtan.errors import IdentityError
from nengtan.jws import SIGNING_ALGORITHMS, VerificationKey, b64url_decode, expected_kid

log = logging.getLogger(__name__)

RECORD_KEYS = ("gateway", "alg", "kid", "public_key", "enrolled_at")


def _check_material(alg: str, material: bytes) -> None:
    try:
        if alg == "Ed25519":
            ed25519.Ed25519PublicKey.from_public_bytes(material)
        elif alg == "ES256":
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), material)
    except ValueError as exc:
        raise IdentityError(f"public_key is not a valid {alg} public key: {exc}") from exc


def parse_record(text: str | bytes, source: str) -> EnrolledKey:
    """Check one enrollment record; raise IdentityError naming ``source`` and every defect."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise IdentityError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise IdentityError(f"{source}: an enrollment record must be a JSON object")
    missing = [k for k in RECORD_KEYS if not isinstance(data.get(k), str)]
    if missing:
        raise IdentityError(f"{source}: missing or non-string key(s): {', '.join(missing)}")
    gateway, alg, kid = data["gateway"], data["alg"], data["kid"]
    problems = []
    if not valid_id(gateway):
        problems.append(f"gateway {gateway!r} is not a valid gateway id")
    if alg not in SIGNING_ALGORITHMS:
        problems.append(f"alg {alg!r} is not one of {', '.join(SIGNING_ALGORITHMS)}")
    try:
        datetime.fromisoformat(data["enrolled_at"])
    except ValueError:
        problems.append(f"enrolled_at {data['enrolled_at']!r} is not an ISO 8601 time")
    material = b""
    try:
        material = b64url_decode(data["public_key"])
    except ValueError:
        problems.append("public_key is not base64url without padding")
    if not problems:
        try:
            _check_material(alg, material)
            if expected_kid(alg, material) != kid:
                problems.append(f"kid {kid!r} does not match the key (expected "
                                f"{expected_kid(alg, material)!r})")
        except IdentityError as exc:
            problems.append(str(exc))
    if problems:
        raise IdentityError(f"{source}: " + "; ".join(problems))
    return EnrolledKey(kid, gateway, alg, material, data["enrolled_at"], source)


def read_record(path: Path) -> EnrolledKey:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityError(f"{path}: cannot read the enrollment record: {exc}") from exc
    key = parse_record(text, str(path))
    if key.alg == "HS256" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        # An HS256 record holds the shared secret itself: anyone who reads it can sign.
        log.warning("%s holds an HS256 secret but is readable by group or others; chmod 600", path)
    return key


@dataclass(frozen=True)
class ReloadResult:
    added: tuple[str, ...] = ()  # names of the files whose key was new to the database
    errors: tuple[str, ...] = ()  # one line per rejected file (or an unreadable directory)


class Registry:
    """Enrolled keys, kept in the store and cached in memory for the ingest hot path."""

    def __init__(self, store: Store, directory: Path, *, min_reload_interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store, self._dir = store, Path(directory)
        self._interval, self._clock = min_reload_interval_s, clock
        self._last_reload: float | None = None
        self._keys: dict[str, VerificationKey] = {}
        self._owner: dict[str, str] = {}
        self._revoked: dict[str, tuple[int, int]] = {}
        self._refresh()

    @property
    def directory(self) -> Path:
        return self._dir

    def _refresh(self) -> None:
        enrolled = self._store.keys()
        # Swap whole dicts: a reader on another thread sees the old or the new set, never half.
        self._keys = {k.kid: VerificationKey(k.kid, k.alg, k.material) for k in enrolled}
        self._owner = {k.kid: k.gateway for k in enrolled}
        self._revoked = {r.kid: (r.epoch, r.seq) for r in self._store.revocations()}

    def refresh(self) -> None:
        """Re-read keys and revocations from the store (another process may have changed
        them: ``nengtan receiver keys revoke``, a second receiver's enrollment)."""
        self._refresh()

    def keys(self) -> Mapping[str, VerificationKey]:
        return self._keys

    def gateway_of(self, kid: str) -> str | None:
        return self._owner.get(kid)

    def revoked_from(self, kid: str) -> tuple[int, int] | None:
        """The (epoch, seq) from which ``kid`` signs nothing, or None."""
        return self._revoked.get(kid)

    def reload(self) -> ReloadResult:
        """Import every ``*.json`` record in the directory. A bad file is reported and skipped,
        so one typo cannot lock every other gateway out."""
        self._last_reload = self._clock()
        added: list[str] = []
        errors: list[str] = []
        paths: list[Path] = []
        if not self._dir.is_dir():
            errors.append(f"the registry directory {self._dir} does not exist")
        else:
            try:
                paths = sorted(self._dir.glob("*.json"))
            except OSError as exc:
                errors.append(f"cannot list {self._dir}: {exc}")
        for path in paths:
            try:
                if self._store.add_key(read_record(path)):
                    added.append(path.name)
            except IdentityError as exc:
                errors.append(str(exc))
        for line in errors:
            log.error("registry: %s", line)
        self._refresh()
        if added:
            log.info("registry: enrolled %s", ", ".join(added))
        return ReloadResult(tuple(added), tuple(errors))

    def reload_if_due(self) -> bool:
        """Reload unless the last reload was less than the minimum interval ago."""
        now = self._clock()
        if self._last_reload is not None and now - self._last_reload < self._interval:
            return False
        self.reload()
        return True

    def enroll_file(self, path: Path | str) -> bool:
        """Check ``path``, copy it into the registry directory and import it. Safe to re-run:
        return False if this key is already enrolled (for the same gateway)."""
        path = Path(path)
        key = read_record(path)
        self._refresh()
        owner = self.gateway_of(key.kid)
        if owner is not None and owner != key.gateway:
            raise IdentityError(f"{path}: key {key.kid} is already enrolled for gateway "
                                f"{owner!r}, not {key.gateway!r}")
        target = self._dir / f"{key.gateway}.{key.kid}.json"
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            # The name carries the kid, which is derived from the key: an existing file
            # already holds this very key, so a re-run leaves it alone.
            if not target.exists():
                tmp = target.with_suffix(".tmp")
                shutil.copyfile(path, tmp)
                # HS256 records carry a secret; no record needs to be world-readable.
                os.chmod(tmp, 0o600)
                os.replace(tmp, target)
        except OSError as exc:
            raise IdentityError(f"cannot copy {path} into {self._dir}: {exc}") from exc
        stored = EnrolledKey(key.kid, key.gateway, key.alg, key.material, key.enrolled_at,
                             str(target))
        added = self._store.add_key(stored)
        self._refresh()
        return added
