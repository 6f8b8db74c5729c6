"""Per-meter bus statistics, written to the state directory for `nengtan agent bus-stats`.

The agent opens no listening port, so technicians read these from a file the agent replaces
atomically every few seconds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class MeterStats:
    requests: int = 0
    ok: int = 0
    silent: int = 0  # no byte came back before the timeout
    garbled: int = 0  # bytes came back, but no valid frame (CRC error, noise, truncation)
    exceptions: int = 0  # a Modbus exception reply
    skipped: int = 0  # reads not attempted because the meter is backing off
    last_error: str = ""
    last_ok: float | None = None  # wall-clock time of the last complete, good read
    latency_ms: float = 0.0  # duration of the last successful request
    latency_max_ms: float = 0.0
    backoff_failures: int = 0
    backoff_until: float = 0.0
    rejected_ranges: list[str] = field(default_factory=list)


def write_stats(path: Path, buses: Mapping[str, Mapping[str, MeterStats]]) -> None:
    doc = {"written_at": time.time(),
           "buses": {bus: {m: asdict(s) for m, s in meters.items()} for bus, meters in buses.items()}}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
