"""Gateway identity: a key pair generated on the gateway, and the enrollment record for the receiver.

The private key never leaves the machine that made it; what travels to the receiver is the
enrollment record (public key, algorithm, key id), as a file for now.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.config import AgentConfig, parse_config
from agent.identity import load_signer
from nengtan.envelope import valid_id
from nengtan.errors import IdentityError
from nengtan.jws import b64url


@dataclass(frozen=True)
class InitResult:
    gateway: str
    key_file: str
    config_file: str
    kid: str
    created: bool  # False when an existing identity was kept (re-running init is safe)


@dataclass(frozen=True)
class Enrollment:
    gateway: str
    alg: str
    kid: str
    public_key: str  # base64url of the raw public key
    enrolled_at: str


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the first byte on, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def init_gateway(*, gateway: str, directory: Path, config: dict[str, Any],
                 replace: bool = False) -> InitResult:
    """Create the key pair and the agent config under ``directory``.

    ``config`` is the agent config without the key path (it is filled in). Re-running with the
    same gateway id keeps the existing key; a different id, or ``replace``, is needed to renew it.
    Raise IdentityError if a key exists and ``replace`` is false, and the id differs.
    """
    if not valid_id(gateway):
        raise IdentityError(f"gateway id {gateway!r} may use letters, digits, '-', '_' and '.' only")
    key_file, config_file = directory / "gateway.key", directory / "agent.toml"
    data = {**config, "gateway": {**config.get("gateway", {}), "id": gateway,
                                  "key_file": str(key_file)}}
    parse_config(data, str(config_file))  # refuse to write a config the agent would reject
    created = False
    if key_file.exists() and not replace:
        existing = _configured_gateway(config_file)
        if existing not in (None, gateway):
            raise IdentityError(f"{key_file} already belongs to gateway {existing!r}; "
                                "pass --replace to create a new identity")
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        _write_private(key_file, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        created = True
    config_file.write_text(tomli_w.dumps(data), encoding="utf-8")
    signer = load_signer(key_file)
    return InitResult(gateway, str(key_file), str(config_file), signer.kid, created)


def _configured_gateway(config_file: Path) -> str | None:
    try:
        return str(tomllib.loads(config_file.read_text())["gateway"]["id"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def enrollment_for(config: AgentConfig, key_file: Path | None = None) -> Enrollment:
    signer = load_signer(key_file or config.gateway.key_file)
    return Enrollment(config.gateway.id, signer.alg, signer.kid, b64url(signer.public_bytes),
                      datetime.now(UTC).isoformat(timespec="seconds"))


def write_enrollment(enrollment: Enrollment, directory: Path) -> Path:
    """Write ``<gateway>.<kid>.json`` into the receiver's registry directory (idempotent)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{enrollment.gateway}.{enrollment.kid}.json"
    if path.exists():
        current = json.loads(path.read_text())
        if current.get("public_key") == enrollment.public_key:
            return path
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(enrollment), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
