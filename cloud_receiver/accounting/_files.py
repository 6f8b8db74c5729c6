"""Reading and replacing the operator's files in the plant directory.

Every optional plant file (alerts.toml, ledger.toml, shifts.toml, …) is read the same way, and
every rewrite goes through one durable replace, so a crash or a reader never sees half a file.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from nengtan.errors import ConfigError


def read_toml(path: Path, *, hint: str | None = None) -> dict[str, Any] | None:
    """The parsed file, or None if there is none; a file that cannot be read or is not TOML is a
    ConfigError naming it (with ``hint``, where its format is described)."""
    if not path.exists():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read it: {exc}"], hint=hint) from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"], hint=hint) from exc


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8): a reader sees the old file or
    the new, never half, and a crash after return keeps the new one. The file keeps its
    permissions (mkstemp would make it 0600 and lock the receiver's user out of a file it must
    read); a new file gets 0644."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)  # the rename itself must survive a power cut
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
