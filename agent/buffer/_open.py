"""Opening the SQLite buffer: check it, and never build on a damaged or stale store.

At start-up the store runs ``PRAGMA quick_check``. A store that fails it, cannot be opened as a
database ("file is not a database", "malformed"), is not an initialised buffer, or is older than
the epoch already claimed, is MOVED (db, -wal, -shm, never deleted) to
``<state_dir>/quarantine/<UTC timestamp>/`` with a ``reason.json``; a fresh store starts with a
new epoch and an alarm is raised. Errors of the environment (permissions, locks, I/O) are not
corruption: they raise StoreError and nothing is moved.

The epoch also lives OUTSIDE the database, in ``<state_dir>/epoch`` (written atomically, fsynced),
and a new epoch is claimed there BEFORE any cycle is committed under it. A lost, truncated or
recreated database therefore never reuses an (epoch, seq) pair; at worst an epoch number is
skipped (after a crash between the claim and the new store), which the receiver does not mind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from agent.buffer import _schema
from agent.buffer._db import sqlite_code
from nengtan.errors import StoreError

EPOCH_FILE = "epoch"
QUARANTINE_DIR = "quarantine"
_SIDECARS = ("-wal", "-shm", "-journal")
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class _Damaged(Exception):
    def __init__(self, detail: str, epoch: int | None = None) -> None:
        super().__init__(detail)
        self.detail, self.epoch = detail, epoch


@dataclass
class Opened:
    conn: sqlite3.Connection
    epoch: int
    alarms: list[tuple[str, str]] = field(default_factory=list)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_epoch(state_dir: Path) -> int | None:
    """The highest epoch ever claimed in ``state_dir``: None if the file is missing, 0 if it
    exists but cannot be read (the caller must then assume the worst)."""
    try:
        text = (state_dir / EPOCH_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return 0
    return int(text) if text.isdigit() and int(text) >= 1 else 0


def _quarantined_epoch(state_dir: Path) -> int:
    """The highest epoch the quarantine's reason files mention (0 if none)."""
    found = 0
    for reason in (state_dir / QUARANTINE_DIR).glob("*/reason.json"):
        try:
            doc = json.loads(reason.read_text())
        except (OSError, ValueError):
            continue
        found = max([found] + [v for k, v in doc.items() if "epoch" in k and isinstance(v, int)])
    return found


def _claimed(state_dir: Path, alarms: list[tuple[str, str]]) -> int | None:
    claimed = read_epoch(state_dir)
    if claimed == 0:
        claimed = max(_quarantined_epoch(state_dir), 1)
        alarms.append(("epoch_file_damaged", f"{state_dir / EPOCH_FILE} is unreadable; assuming "
                       f"epoch {claimed} was in use"))
    return claimed


def write_epoch(state_dir: Path, epoch: int) -> None:
    """Replace the epoch file atomically: write a temporary file, fsync, rename, fsync the dir."""
    tmp = state_dir / f".{EPOCH_FILE}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{epoch}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, state_dir / EPOCH_FILE)
    _fsync_dir(state_dir)


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: every transaction is explicit, so its extent is visible.
    return sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)


def _check(path: Path) -> int:
    """Return the epoch of the store at ``path``; raise _Damaged if it cannot be trusted.

    The check reads through a read-only connection: closing it never checkpoints or deletes the
    WAL, so a damaged store reaches the quarantine exactly as it was found.
    """
    conn = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True, timeout=10)
    epoch: int | None = None
    try:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            epoch = int(row[0]) if row else None
        except (sqlite3.Error, ValueError):
            pass  # best effort: a damaged store may still tell which epoch it held
        problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
        if problems != ["ok"]:
            raise _Damaged("quick_check: " + "; ".join(problems), epoch)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _schema.SCHEMA_VERSION:
            raise StoreError(f"{path} has schema version {version}, newer than this agent's "
                             f"{_schema.SCHEMA_VERSION}: upgrade the agent")
        if version == 0 or epoch is None:
            raise _Damaged("not an initialised buffer (no schema version or no epoch)", epoch)
    except sqlite3.DatabaseError as exc:
        if sqlite_code(exc) in _CORRUPT_CODES:
            raise _Damaged(f"{exc.sqlite_errorname}: {exc}", epoch) from exc
        raise StoreError(f"cannot open the buffer at {path}: {exc}") from exc
    finally:
        conn.close()
    return epoch


def quarantine(path: Path, reason: str, detail: str, info: dict[str, object], wall_ms: int) -> Path:
    """Move the store's files into a new ``quarantine/<UTC timestamp>/`` directory."""
    root = path.parent / QUARANTINE_DIR
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall_ms / 1000))
    target, n = root / stamp, 1
    while target.exists():
        n += 1
        target = root / f"{stamp}-{n}"
    target.mkdir(parents=True)
    for name in [path.name] + [path.name + s for s in _SIDECARS]:
        if (path.parent / name).exists():
            os.replace(path.parent / name, target / name)
    (target / "reason.json").write_text(json.dumps(
        {"reason": reason, "detail": detail, "wall_ms": wall_ms, **info}, indent=2) + "\n")
    for directory in (target, root, path.parent):
        _fsync_dir(directory)
    return target


def _create(path: Path, epoch: int) -> None:
    """Build a new, initialised store beside ``path`` and rename it into place, so a store at
    ``path`` always has its schema and epoch."""
    tmp = path.with_name(path.name + ".new")
    for stale in (tmp, tmp.with_name(tmp.name + "-journal")):
        stale.unlink(missing_ok=True)  # a half-built empty store from a crash: holds no data
    conn = _connect(tmp)
    try:
        # Incremental auto-vacuum must be chosen before the first table exists.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("BEGIN IMMEDIATE")
        _schema.create(conn, epoch)
        conn.execute("COMMIT")
    finally:
        conn.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def open_store(path: Path, wall_ms: int, boot_id: str) -> Opened:
    """Open the buffer at ``path``, recovering from a damaged, stale or missing store."""
    state = path.parent
    alarms: list[tuple[str, str]] = []
    claimed = _claimed(state, alarms)
    present = [s for s in ("", *_SIDECARS) if path.with_name(path.name + s).exists()]
    if "" in present:
        try:
            epoch = _check(path)
        except _Damaged as exc:
            new = max(claimed or 0, exc.epoch or 0, _quarantined_epoch(state), 1) + 1
            write_epoch(state, new)  # claim the new epoch before anything is committed in it
            where = quarantine(path, "damaged", exc.detail, {"epoch": exc.epoch, "new_epoch": new,
                                                             "boot_id": boot_id}, wall_ms)
            alarms.append(("store_corrupt", f"the buffer was damaged ({exc.detail}); moved to "
                           f"{where}; new epoch {new}"))
        else:
            if claimed is None or claimed <= epoch:
                if claimed != epoch:
                    write_epoch(state, epoch)
                conn = _connect(path)
                conn.execute("BEGIN IMMEDIATE")
                _schema.migrate(conn)
                conn.execute("COMMIT")
                return Opened(conn, epoch, alarms)
            new = claimed + 1
            write_epoch(state, new)
            where = quarantine(path, "stale", f"store has epoch {epoch}, epoch {claimed} was "
                               "already claimed", {"epoch": epoch, "new_epoch": new,
                                                   "boot_id": boot_id}, wall_ms)
            alarms.append(("store_stale", f"the buffer holds epoch {epoch} but epoch {claimed} "
                           f"was already in use (restored copy?); moved to {where}; new epoch {new}"))
    else:
        # Leftover -wal/-shm files mean a store existed: at least epoch 1 was in use.
        new = max(claimed or 0, _quarantined_epoch(state), 1 if present else 0) + 1
        write_epoch(state, new)
        if present:  # a -wal without its database must never meet a new one
            quarantine(path, "orphans", f"{', '.join(path.name + s for s in present)} without "
                       "a database", {"new_epoch": new, "boot_id": boot_id}, wall_ms)
        if claimed is not None or present:
            alarms.append(("store_missing", f"the buffer {path} is gone although epoch "
                           f"{new - 1} was in use; its unsent cycles are lost; new epoch {new}"))
    _create(path, new)
    return Opened(_connect(path), new, alarms)
