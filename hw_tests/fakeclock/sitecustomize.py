"""Shift the wall clock of a Python process at run time, for clock-step tests of the real agent.

Put this folder first on PYTHONPATH and name a file in NENGTAN_FAKE_CLOCK_FILE. The file holds
either an offset in seconds ("-10800" steps the clock back 3 h) or "@<unix seconds>" (the clock
jumps there and runs on from it, like a Pi booting without an RTC). time.time and time.time_ns
follow it; the monotonic clocks do not, as on a real machine where only the wall clock is
stepped. libfaketime cannot do this for CPython: with monotonic time left alone, its
clock_nanosleep breaks time.sleep (EINVAL).
"""

from __future__ import annotations

import os
import time

_FILE = os.environ.get("NENGTAN_FAKE_CLOCK_FILE")
_real_time, _real_time_ns, _monotonic = time.time, time.time_ns, time.monotonic
_state = {"read_at": -1.0, "spec": "0", "anchor": (0.0, 0.0)}


def _offset() -> float:
    now_mono = _monotonic()
    if now_mono - _state["read_at"] > 0.1:  # type: ignore[operator]
        _state["read_at"] = now_mono
        try:
            spec = open(_FILE).read().strip() if _FILE else "0"  # noqa: SIM115
        except OSError:
            spec = str(_state["spec"])
        if spec != _state["spec"]:
            _state["spec"] = spec
            # "@T": the wall clock reads T now and runs on from there.
            _state["anchor"] = (float(spec[1:]), now_mono) if spec.startswith("@") else (0.0, 0.0)
    spec = str(_state["spec"])
    if spec.startswith("@"):
        target, since = _state["anchor"]  # type: ignore[misc]
        return float(target) + (now_mono - float(since)) - _real_time()
    return float(spec or 0)


def _time() -> float:
    return _real_time() + _offset()


def _time_ns() -> int:
    return _real_time_ns() + int(_offset() * 1e9)


if _FILE:
    time.time = _time
    time.time_ns = _time_ns
