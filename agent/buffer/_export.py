"""`nengtan agent export`: copy stored envelopes out of the buffer, exactly as they were signed.

Across a data diode the receiver cannot ask for what it lacks; it lists the missing cycle ranges
(`nengtan receiver gaps`), a technician exports them here and carries the file through the
approved channel (removable media, the next diode transfer) to `nengtan receiver import`. The
file holds one compact JWS per line: the very bytes the agent sealed and sent, so the receiver
verifies and deduplicates them like any message, and the hash chain is unchanged.

It reads through a read-only connection, so it can run beside the agent; every envelope that
holds any requested cycle goes out whole (a signed envelope cannot be cut).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from agent.buffer._inspect import _meta
from nengtan.errors import StoreError


@dataclass
class ExportReport:
    epoch: int
    envelopes: int = 0
    first: int | None = None  # first cycle of the first envelope written
    last: int | None = None  # last cycle of the last envelope written
    #: requested cycle ranges no stored envelope holds: history expired, dropped at the disk cap
    #: (then declared as a gap), or not sealed yet
    not_stored: list[tuple[int, int]] = field(default_factory=list)


def export_envelopes(path: Path, first: int, last: int, out: TextIO, *,
                     epoch: int | None = None) -> ExportReport:
    """Write every stored envelope holding any cycle of ``first..last`` to ``out``, one token per
    line, in seq order; StoreError if the buffer cannot be read or holds another ``epoch``."""
    if not path.exists():
        raise StoreError(f"no buffer at {path}: the agent has not run with this config")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            held = _meta(conn, "epoch")
            if epoch is not None and epoch != held:
                raise StoreError(f"the buffer at {path} holds epoch {held}, not {epoch}: a store of "
                                 "an older epoch is in quarantine/ next to it, or gone")
            report = ExportReport(held)
            covered = first  # every requested cycle below this is written or listed as not stored
            rows = conn.execute("SELECT seq, last, token FROM envelopes WHERE last >= ? AND seq <= ? "
                                "ORDER BY seq", (first, last))
            for seq, end, token in rows:
                if seq > covered:
                    report.not_stored.append((covered, seq - 1))
                covered = max(covered, end + 1)
                out.write(f"{token}\n")
                report.envelopes += 1
                report.first = seq if report.first is None else report.first
                report.last = end
            if covered <= last:
                report.not_stored.append((covered, last))
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the buffer at {path}: {exc}") from exc
    return report
