"""Load the gateway's signing key. Under systemd the key arrives as the credential
``gateway.key`` in ``$CREDENTIALS_DIRECTORY`` and wins over the configured path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from nengtan.errors import IdentityError
from nengtan.jws import Ed25519Signer, ES256Signer

CREDENTIAL_NAME = "gateway.key"


def key_path(configured: Path) -> Path:
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL_NAME).is_file():
        return Path(creds) / CREDENTIAL_NAME
    return configured


def load_signer(path: Path) -> Ed25519Signer | ES256Signer:
    """Read a PEM private key; refuse one that others can read, since it signs regulatory data."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(f"{path} is readable by group or others (mode {stat.filemode(mode)}); "
                            f"run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise IdentityError(f"{path} is not a PEM private key: {exc}") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Ed25519Signer(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ES256Signer(key)
    raise IdentityError(f"{path}: only Ed25519 and P-256 keys are supported")
