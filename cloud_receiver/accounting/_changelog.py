"""The plant directory's change log: one JSON line per applied edit of the plant model, so who
changed what can be reconstructed (``changes.log``, append-only, fsynced)."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CHANGES_FILE = "changes.log"


def _user() -> str:
    """The account making the edit; the log is for audits, so a best effort beats nothing."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "?"


def append_change(directory: Path, *, action: str, target: str, file: str,
                  before: dict[str, Any] | None, after: dict[str, Any] | None,
                  notes: Sequence[str] = ()) -> None:
    """Append one entry (time in UTC) and fsync it, and the directory when the log is new."""
    entry: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "by": _user(), "action": action, "id": target, "file": file, "before": before,
        "after": after}
    if notes:
        entry["notes"] = list(notes)
    path = directory / CHANGES_FILE
    new = not path.exists()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    if new:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_changes(plant_dir: Path | str) -> tuple[list[dict[str, Any]], list[int]]:
    """The log's entries, oldest first, and the numbers of lines that could not be read (a
    crash while appending can tear the last one)."""
    path = Path(plant_dir) / CHANGES_FILE
    if not path.exists():
        return [], []
    entries: list[dict[str, Any]] = []
    bad: list[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
        elif line.strip():
            bad.append(number)
    return entries, bad
