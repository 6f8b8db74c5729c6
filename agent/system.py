"""The little the agent needs from the operating system: clock sync state and sd_notify."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket

_TIME_ERROR = 5  # adjtimex(2): the kernel clock is not synchronised


class _Timex(ctypes.Structure):
    # Only `modes` is set (0 = read only); the rest of struct timex is room for the kernel to fill.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


def clock_synced() -> bool:
    """True when the kernel says the clock is disciplined (NTP, chrony or timesyncd).

    A Pi has no RTC: until this turns true, its wall clock may be days off, so readings are marked
    unsynced and the receiver can re-time them. A failed query counts as unsynced.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        state = libc.adjtimex(ctypes.byref(_Timex()))
    except (OSError, AttributeError):
        return False
    return bool(state >= 0 and state != _TIME_ERROR)


def sd_notify(message: str) -> bool:
    """Send ``message`` to systemd if we run under Type=notify; False when there is no socket."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True
