"""Rotating the gateway's signing key (``nengtan provision rotate``); the record is docs/keys.md.

The agent must be stopped: the point from which the new key signs is the first cycle the buffer
has not sealed yet, and only a stopped agent leaves that where it is. The files, next to the
configured key (``/etc/nengtan/gateway.key``):

* ``gateway.key.next``: the new key, staged (mode 0600) before anything else changes;
* ``<gateway>.rotation.<old kid>.<new kid>.json``: the record, signed by the old and the new key,
  to be applied on the receiver (``nengtan receiver keys rotate``);
* ``gateway.key.<old kid>.retired``: the old key, kept for audit (mode 0600);
* ``gateway.key``: the new key, swapped in with one rename, so the agent signs with it from its
  next start on.

Each step can be repeated, so a crash anywhere is mended by running the command again: a staged
key is reused (never a second new key for the same rotation), and once the swap is done and the
agent has sealed nothing since, running it again only shows the pending record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agent.buffer import buffer_holder, next_signed_cycle
from agent.identity import load_signer
from agent.runner import BUFFER_FILE
from nengtan.errors import IdentityError
from nengtan.rotation import (
    KeyLifecycleError,
    RotationPayload,
    dump_rotation,
    new_payload,
    parse_rotation,
    sign_rotation,
)
from provisioning.identity import _write_private

#: What the Python agent can sign with (agent.identity.load_signer reads PEM keys only). HS256
#: is for MicroPython nodes, which keep their secret on the node.
AGENT_ALGORITHMS = ("Ed25519", "ES256")


class AgentRunning(IdentityError):
    """The buffer is open: rotating now would let the agent seal on with the old key past the
    point the record names, and those envelopes would be quarantined."""

    hint = "Stop the agent first (sudo systemctl stop nengtan-agent), then run this again."


class RotationIncomplete(IdentityError):
    """A file could not be written midway; what is done stays done."""

    hint = "Fix the cause and run the command again: every step is safe to repeat."


@dataclass(frozen=True)
class RotateResult:
    gateway: str
    old_kid: str
    new_kid: str
    alg: str
    from_epoch: int
    from_seq: int
    record: str
    key_file: str
    retired_key: str
    created: bool  # False: this rotation was done before and is pending; only shown again


def record_path(directory: Path, gateway: str, old_kid: str, new_kid: str) -> Path:
    return directory / f"{gateway}.rotation.{old_kid}.{new_kid}.json"


def retired_path(key_file: Path, kid: str) -> Path:
    return key_file.with_name(f"{key_file.name}.{kid}.retired")


def staged_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".next")


def generate_key(alg: str) -> bytes:
    """A new private key for ``alg`` as unencrypted PKCS#8 PEM, as ``provision init`` writes."""
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if alg == "Ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise KeyLifecycleError(f"the agent cannot sign with {alg!r}: it signs with "
                                f"{' or '.join(AGENT_ALGORITHMS)} (HS256 is for MicroPython nodes)")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pending(key_file: Path, gateway: str, current_kid: str,
             point: tuple[int, int]) -> tuple[Path, RotationPayload] | None:
    """The record of a finished rotation to the current key that nothing has been signed
    under yet (the buffer's next cycle is still the record's point)."""
    for path in sorted(key_file.parent.glob(f"{gateway}.rotation.*.{current_kid}.json")):
        try:
            payload = parse_rotation(path.read_bytes(), str(path)).payload
        except (OSError, IdentityError):
            continue  # not ours to judge here; the receiver names its defects
        if (payload.gateway, payload.new.kid, payload.point) == (gateway, current_kid, point) \
                and retired_path(key_file, payload.old_kid).exists():
            return path, payload
    return None


def rotate_gateway(*, gateway: str, key_file: Path, state_dir: Path,
                   alg: str = "Ed25519") -> RotateResult:
    """Rotate the key of ``gateway`` (see the module docstring); safe to re-run.

    Raise AgentRunning if the agent has the buffer open, IdentityError if a key cannot be read,
    RotationIncomplete if a file cannot be written, StoreError if the buffer cannot be read.
    """
    buffer = Path(state_dir) / BUFFER_FILE
    holder = buffer_holder(buffer)
    if holder is not None:
        raise AgentRunning(f"{buffer} is open in process {holder}: the agent (or another "
                           "program) is running")
    current = load_signer(key_file)
    point = next_signed_cycle(buffer)
    pending = _pending(key_file, gateway, current.kid, point)
    if pending is not None:
        path, p = pending
        return RotateResult(gateway, p.old_kid, p.new.kid, p.new.alg, p.from_epoch, p.from_seq,
                            str(path), str(key_file), str(retired_path(key_file, p.old_kid)),
                            created=False)
    staged = staged_path(key_file)
    try:
        if not staged.exists():
            _write_private(staged, generate_key(alg))
        new = load_signer(staged)
        if new.alg != alg:
            raise KeyLifecycleError(f"{staged} holds a staged {new.alg} key from an unfinished "
                                    f"rotation; run again with --alg {new.alg}, or delete it")
        payload = new_payload(gateway=gateway, old_kid=current.kid, new=new, from_epoch=point[0],
                              from_seq=point[1],
                              at=datetime.now(UTC).isoformat(timespec="seconds"))
        record = record_path(key_file.parent, gateway, current.kid, new.kid)
        _write_private(record, dump_rotation(sign_rotation(payload, current, new)).encode())
        retired = retired_path(key_file, current.kid)
        if not retired.exists():
            try:
                os.link(key_file, retired)  # the same file under a second name: mode 0600 kept
            except OSError:  # a file system without hard links
                _write_private(retired, key_file.read_bytes())
        os.replace(staged, key_file)
        _fsync_dir(key_file.parent)
    except OSError as exc:
        raise RotationIncomplete(f"cannot rotate the key in {key_file.parent}: {exc}") from exc
    return RotateResult(gateway, current.kid, new.kid, new.alg, point[0], point[1], str(record),
                        str(key_file), str(retired), created=True)
