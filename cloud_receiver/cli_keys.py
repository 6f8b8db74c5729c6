"""``nengtan receiver keys …``: list, revoke, rotate and audit enrolled keys (docs/keys.md).

Thin over ``cloud_receiver.rotation`` and the store. A running receiver re-reads keys and
revocations by itself within seconds, so these commands work beside it.
"""

from __future__ import annotations

import getpass
from dataclasses import asdict
from pathlib import Path

import click

from cloud_receiver.config import load_config
from cloud_receiver.rotation import ARCHIVE_DIR, RotationResult, apply_rotation, revoke
from cloud_receiver.store import open_store
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors
from nengtan.errors import IdentityError

#: More audit events than any registry should ever have; reaching it is reported, not hidden.
AUDIT_MAX = 100_000

_CONFIG = click.option("--config", "config_path", required=True,
                       type=click.Path(dir_okay=False, path_type=Path),
                       help="The receiver's TOML config (see receiver.sample.toml).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME (a bare container)
        return "unknown user"


@click.group(name="keys", context_settings=CONTEXT_SETTINGS)
def keys() -> None:
    """Enrolled keys: list them, revoke one, apply a rotation, show the audit trail.

    \b
    Example:
        nengtan receiver keys list --config /etc/nengtan-receiver/receiver.toml
    """


@keys.command(name="list")
@_CONFIG
@_JSON
@handle_errors
def list_command(config_path: Path, as_json: bool) -> None:
    """List enrolled keys and their revocation points.

    Each key with its gateway, algorithm, enrollment time and, if it is revoked, the point
    (epoch, seq) from which it signs nothing.

    \b
    Example:
        nengtan receiver keys list --config receiver.toml
        nengtan receiver keys list --config receiver.toml --json | jq '.keys[].kid'
    """
    config = load_config(config_path)
    store = open_store(config.storage, create=False)
    try:
        enrolled = sorted(store.keys(), key=lambda k: (k.gateway, k.enrolled_at, k.kid))
        revoked = {r.kid: r for r in store.revocations()}
    finally:
        store.close()
    if as_json:
        emit_json({"keys": [
            {"kid": k.kid, "gateway": k.gateway, "alg": k.alg, "enrolled_at": k.enrolled_at,
             "source": k.source, "revoked_from": None if (r := revoked.get(k.kid)) is None else {
                 "epoch": r.epoch, "seq": r.seq, "reason": r.reason, "at": r.at}}
            for k in enrolled]})
        return
    if not enrolled:
        click.echo("no keys enrolled")
    for k in enrolled:
        r = revoked.get(k.kid)
        state = f"revoked from epoch {r.epoch} seq {r.seq} ({r.reason})" if r else "valid"
        click.echo(f"{k.gateway:<20} {k.kid:<26} {k.alg:<8} enrolled {k.enrolled_at}  {state}")


@keys.command(name="revoke")
@_CONFIG
@click.option("--kid", required=True, help="The key id, as `keys list` shows it.")
@click.option("--from-epoch", "epoch", required=True, type=click.IntRange(min=1),
              help="The gateway's epoch from which the key signs nothing.")
@click.option("--from-seq", "seq", required=True, type=click.IntRange(min=1),
              help="The first cycle (seq) of that epoch the key may not sign.")
@click.option("--reason", required=True, help="Why, for the audit trail (e.g. 'key leaked').")
@_JSON
@handle_errors
def revoke_command(config_path: Path, kid: str, epoch: int, seq: int, reason: str,
                   as_json: bool) -> None:
    """Revoke a key from a cycle (epoch, seq) on.

    Envelopes and checkpoints the key signed before that point are still accepted (a
    backlog); anything reaching the point is quarantined as revoked_key. Safe to re-run; a
    revocation only ever moves earlier (a later point than the one recorded changes
    nothing). Use `nengtan receiver gaps` to see which cycles the gateway has delivered.

    \b
    Example:
        nengtan receiver keys revoke --config receiver.toml --kid ed25519-Qm9vZ3lLZXlJZA \\
            --from-epoch 3 --from-seq 120001 --reason "gateway stolen"
    """
    config = load_config(config_path)
    store = open_store(config.storage, create=False)
    try:
        result = revoke(store, kid, epoch=epoch, seq=seq, reason=reason,
                        source=f"nengtan receiver keys revoke, by {_operator()}")
    finally:
        store.close()
    if as_json:
        emit_json(asdict(result))
    elif result.changed:
        click.echo(f"revoked {kid} ({result.gateway}) from epoch {epoch} seq {seq}")
    else:
        click.echo(f"unchanged: {kid} ({result.gateway}) is already revoked from epoch "
                   f"{result.epoch} seq {result.seq} ({result.reason})")


def _rotation_row(r: RotationResult) -> dict[str, object]:
    return {**asdict(r), "changed": r.changed}


@keys.command(name="rotate")
@_CONFIG
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_JSON
@handle_errors
def rotate_command(config_path: Path, files: tuple[Path, ...], as_json: bool) -> None:
    """Apply key rotation records, in the order given.

    The records come from `nengtan provision rotate` on the gateway.
    Each record must be signed by the enrolled old key and by the new key over the same
    payload. The new key is enrolled and the old one revoked from the record's (epoch, seq):
    its backlog sealed before that point is still accepted. A copy of the record is kept in
    [registry] dir/rotations/. Safe to re-run. A bad record changes nothing and exits 1
    naming the file and the defect; the records before it stay applied.

    \b
    Example:
        nengtan receiver keys rotate --config receiver.toml /media/usb/gw-zz-01.rotation.*.json
    """
    config = load_config(config_path)
    store = open_store(config.storage, create=False)
    done: list[RotationResult] = []
    failure: IdentityError | None = None
    try:
        for path in files:
            try:
                done.append(apply_rotation(store, path,
                                           archive_dir=config.registry_dir / ARCHIVE_DIR))
            except IdentityError as exc:
                failure = exc
                break
    finally:
        store.close()
    if as_json:
        emit_json({"files": [_rotation_row(r) for r in done],
                   "error": None if failure is None else str(failure)})
    else:
        for r in done:
            what = (f"{r.gateway}: {r.new_kid} ({r.alg}) replaces {r.old_kid} from epoch "
                    f"{r.from_epoch} seq {r.from_seq}")
            click.echo(f"{r.source}: {'rotated' if r.changed else 'already applied'}: {what}")
    if failure is not None:
        raise failure


@keys.command(name="audit")
@_CONFIG
@_JSON
@click.option("--gateway", default=None, help="Only this gateway id.")
@handle_errors
def audit_command(config_path: Path, as_json: bool, gateway: str | None) -> None:
    """Show the key audit trail, oldest first.

    Every key enrolled, rotated in or revoked: when, from which file or command, and why.

    \b
    Example:
        nengtan receiver keys audit --config receiver.toml --gateway gw-zz-01
        nengtan receiver keys audit --config receiver.toml --json | jq '.events[]'
    """
    config = load_config(config_path)
    store = open_store(config.storage, create=False)
    try:
        events = store.key_events(limit=AUDIT_MAX)
    finally:
        store.close()
    if len(events) >= AUDIT_MAX:
        click.echo(f"warning: only the oldest {AUDIT_MAX} events are shown", err=True)
    selected = [e for e in events if gateway is None or e.gateway == gateway]
    if as_json:
        emit_json({"events": [asdict(e) for e in selected]})
        return
    if not selected:
        click.echo("no key events" + (f" for gateway {gateway}" if gateway else ""))
    for e in selected:
        click.echo(f"{e.at}  {e.event:<8} {e.gateway:<20} {e.kid}  {e.detail}  [{e.source}]")
