"""Layout-keeping edits of operator TOML files, and the durable write that replaces them.

tomlkit keeps comments, but it stores the blank line and any section comment that sit between
two ``[[table]]`` blocks at the end of the upper table's body. Left alone, a key added to a
table would land below that comment and an appended table above the next section's header, so
the helpers here move that trailer to where an operator would expect it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Comment, Item, Table, Whitespace

LOCK_FILE = ".plant-edit.lock"


def plain(value: Any) -> Any:
    """``value`` with tomlkit items and dates turned into JSON-ready Python values."""
    if isinstance(value, Item):
        value = value.unwrap()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def _trailing(table: Table, start: int) -> list[Comment | Whitespace]:
    """The key-less entries (comments, blank lines) of ``table`` from ``start`` on."""
    return [item for _, item in table.value.body[start:]
            if isinstance(item, Comment | Whitespace)]


def _split_trailer(table: Table) -> list[Comment | Whitespace]:
    """Remove and return the part of ``table``'s trailing comments that starts at its first blank
    line: the separator and any header of what follows. Comments directly under the last key
    stay, since they annotate this table."""
    body = table.value.body
    end = len(body)
    while end > 0 and body[end - 1][0] is None:
        end -= 1
    cut = next((i for i in range(end, len(body)) if isinstance(body[i][1], Whitespace)),
               len(body))
    moved = _trailing(table, cut)
    # Only key-less entries are cut, so the key index of the container stays valid.
    del body[cut:]
    return moved


def set_key(table: Table, key: str, value: Any) -> None:
    """Set ``key`` keeping its inline comment, or add it below the last key of ``table``."""
    if key in table:
        table[key] = value
        return
    body = table.value.body
    end = len(body)
    while end > 0 and body[end - 1][0] is None:
        end -= 1
    tail = _trailing(table, end)
    del body[end:]
    table.add(key, value)
    for item in tail:
        table.add(item)


def append_table(aot: AoT, fields: dict[str, Any]) -> None:
    """Append a table of ``fields`` to ``aot``, laid out like the tables before it."""
    new = tomlkit.table()
    for key, value in fields.items():
        new.add(key, value)
    if len(aot) > 0:
        previous = aot[-1]
        moved = _split_trailer(previous)
        # The previous table keeps its blank line; the section header below it (if any) moves
        # below the new table, together with the blank line that introduces it.
        gap = moved[0].as_string() if moved and isinstance(moved[0], Whitespace) else "\n"
        previous.add(tomlkit.ws(gap))
        for item in moved:
            new.add(item)
    aot.append(new)


def remove_table(aot: AoT, index: int) -> None:
    """Remove table ``index``; the header comment of the next section moves up to the table
    before it, so only the removed table's own lines go."""
    moved = _split_trailer(aot[index])
    if index > 0:
        _split_trailer(aot[index - 1])
        for item in moved:
            aot[index - 1].add(item)
    del aot[index]


@contextmanager
def edit_lock(directory: Path) -> Iterator[None]:
    """Serialise edits of one plant directory, so two technicians cannot lose each other's
    change between read and write."""
    with open(directory / LOCK_FILE, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a reader sees the old file or the new, never half, and a
    crash after return keeps the new one. The file keeps its permissions (mkstemp would make
    it 0600 and lock the receiver's user out of a file it must read)."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
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
