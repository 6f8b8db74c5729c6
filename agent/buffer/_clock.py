"""The clocks stamped on every cycle and envelope.

The wall clock of a Pi without RTC can be days off, or 1970, until it syncs: it is recorded for
the receiver but never used to order anything. The order is the seq; "how old is this cycle" for
the live-first drain uses CLOCK_BOOTTIME, which never jumps and keeps counting through suspend,
together with the kernel's boot id (a monotonic reading means nothing in another boot).
"""

from __future__ import annotations

import time
from pathlib import Path

from nengtan.envelope import ClockInfo

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_boot_id: str | None = None


def boot_id() -> str:
    global _boot_id
    if _boot_id is None:
        try:
            _boot_id = BOOT_ID_FILE.read_text().strip() or "unknown"
        except OSError:
            _boot_id = "unknown"
    return _boot_id


def system_clock() -> ClockInfo:
    """The real clocks: boot id, CLOCK_BOOTTIME and the wall clock, in ms."""
    return ClockInfo(boot_id(), time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000,
                     time.time_ns() // 1_000_000)


def is_live(clock: ClockInfo, boot: str | None, mono_ms: int | None, live_s: float) -> bool:
    """True when a cycle committed at (boot, mono_ms) is younger than ``live_s`` now."""
    return (boot == clock.boot_id and mono_ms is not None
            and 0 <= clock.mono_ms - mono_ms <= live_s * 1000)
