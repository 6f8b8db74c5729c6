"""Layout-keeping edits of operator TOML files, and the lock that serialises them.

tomlkit keeps comments, but it stores the blank line and any section comment that sit between
two ``[[table]]`` blocks at the end of the upper table's body. Left alone, a key added to a
table would land below that comment and an appended table above the next section's header, so
the helpers here move that trailer to where an operator would expect it.
"""

from __future__ import annotations

import fcntl
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
