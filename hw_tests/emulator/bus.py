"""An RS-485 line of emulated meters behind a pseudo-terminal, paced like the real wire.

A pty delivers bytes instantly and ignores the baud rate (shared/reference/meters.md §5.1), so the
serving thread does the pacing itself: it answers no earlier than the request's own wire time plus
the meter's turnaround, and releases the response so that it lasts (5 + 2n) character times.
"""

from __future__ import annotations

import logging
import math
import os
import select
import threading
import time
import tty
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from agent.meters import LineTiming
from hw_tests.emulator import rtu
from hw_tests.emulator.plant import EmulatedMeter, EnergyTruth, UnreadableRegisters

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.5  # select timeout when idle: bounds nothing but a forgotten wake-up


@dataclass(frozen=True)
class Faults:
    """Faults injected for one unit, each applied at its own stage of answering a request.

    Frozen and swapped whole (``PtyBus.set_faults``), so the serving thread, which takes one
    snapshot per request, never sees half of a change made from another thread. New faults slot
    into a stage: whether to answer (``silent``), what to answer (``exception_code``), which bytes
    go out (``mangle``: later noise, truncation, a wrong unit id) and when (``delay_ms``).
    """

    silent: bool = False
    delay_ms: float = 0.0
    corrupt_crc: bool = False
    exception_code: int | None = None

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        if self.exception_code is not None and not 1 <= self.exception_code <= 255:
            raise ValueError("exception_code must be 1..255")

    def mangle(self, frame: bytes) -> bytes:
        """The bytes actually sent for a well-formed response ``frame``."""
        if self.corrupt_crc:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        return frame


@dataclass
class UnitStats:
    """Counters of one unit; written by the serving thread only."""

    requests: int = 0  # CRC-valid requests addressed to the unit
    responses: int = 0  # frames that went out (normal, exception or mangled)
    exceptions: int = 0
    dropped: int = 0  # requests left unanswered on purpose (``silent``)


class PtyBus:
    """Meters sharing one emulated line; the agent opens ``port`` (or ``link``) as a serial port.

    Args:
        meters: the emulated meters, with distinct unit ids.
        baudrate, parity, stopbits: the line settings the pacing follows (8 data bits).
        link: optional symlink to the pty, replaced atomically, removed on close.
    """

    def __init__(self, meters: Iterable[EmulatedMeter], *, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1, link: str | os.PathLike[str] | None = None
                 ) -> None:
        if parity not in ("N", "E", "O") or stopbits not in (1, 2) or baudrate <= 0:
            raise ValueError(f"unsupported line settings {baudrate} 8{parity}{stopbits}")
        self.timing = LineTiming(baudrate, parity, stopbits)
        self.meters: dict[int, EmulatedMeter] = {}
        for meter in meters:
            if meter.unit in self.meters:
                raise ValueError(f"two meters with unit {meter.unit}")
            self.meters[meter.unit] = meter
        self.stats = {unit: UnitStats() for unit in self.meters}
        self.served_version = 0  # bumped when an energy value reached the wire intact
        self._faults = {unit: Faults() for unit in self.meters}
        self._faults_lock = threading.Lock()
        self._master, self._slave = os.openpty()
        # Raw, so no echo or newline mangling before the agent's pyserial sets the same; the slave
        # stays open here so the line never hangs up (EIO on the master) between agent reopenings.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._line_free_at = 0.0
        self._thread = threading.Thread(target=self._serve, name=f"pty-bus {self.port}",
                                        daemon=True)
        self._closed = False
        self.link = Path(link) if link is not None else None
        if self.link is not None:
            self._make_link(self.link)

    # -- control, from any thread ------------------------------------------------------------

    def start(self) -> PtyBus:
        self._thread.start()
        return self

    def __enter__(self) -> PtyBus:
        return self if self._thread.is_alive() else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_serving(self) -> bool:
        return self._thread.is_alive()

    def faults(self, unit: int) -> Faults:
        return self._faults[unit]

    def set_faults(self, unit: int, **changes: object) -> Faults:
        """Change some faults of ``unit`` (``silent=True``, ...); the next request sees them."""
        with self._faults_lock:
            self._faults[unit] = replace(self._faults[unit], **changes)  # type: ignore[arg-type]
            return self._faults[unit]

    def clear_faults(self, unit: int | None = None) -> None:
        with self._faults_lock:
            for u in self._faults if unit is None else [unit]:
                self._faults[u] = Faults()

    def truth(self) -> dict[int, EnergyTruth]:
        return {unit: meter.truth() for unit, meter in self.meters.items()}

    def close(self) -> None:
        """Stop serving, join the thread, close every descriptor and remove the link."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            os.close(fd)
        if self.link is not None and self.link.is_symlink() and os.readlink(self.link) == self.port:
            self.link.unlink()

    def _make_link(self, link: Path) -> None:
        if link.exists() and not link.is_symlink():
            raise FileExistsError(f"{link} exists and is not a symlink; not replacing it")
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.port, tmp)
        os.replace(tmp, link)  # atomic: an agent polling for the link never sees it missing

    # -- serving thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        buf = bytearray()
        arrived_at = last_rx = 0.0
        # A frame cut by a silence is discarded, as on a real line; generous against host jitter.
        stale_s = max(4 * self.timing.silence_s, 0.02)
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master, self._wake_r], [], [],
                                        stale_s if buf else _IDLE_POLL_S)
            if self._wake_r in ready:
                break
            if self._master in ready:
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    data = b""
                except OSError:  # EIO if nobody holds the slave; cannot happen while we do
                    self._stop.wait(0.05)
                    continue
                if data:
                    if not buf:
                        arrived_at = time.perf_counter()
                    buf += data
                    last_rx = time.perf_counter()
            arrived_at = self._frame(buf, arrived_at, last_rx)
            if buf and time.perf_counter() - last_rx > stale_s:
                # Nothing more is coming. A pty shows no silence between noise and a request
                # written together, so hunt past the head for a request the noise hid.
                log.debug("incomplete frame after a silence: %s", buf.hex(" "))
                while buf:
                    del buf[:1]
                    arrived_at = self._frame(buf, arrived_at, last_rx)

    def _frame(self, buf: bytearray, arrived_at: float, last_rx: float) -> float:
        """Serve every whole request at the head of ``buf``; return the next frame's arrival."""
        while buf:
            frame, used = rtu.split_frame(bytes(buf))
            if not used:
                break
            del buf[:used]
            if frame is not None:
                self._handle(frame, arrived_at)
                arrived_at = last_rx  # what is left came with the latest chunk at the earliest
        return arrived_at

    def _handle(self, frame: bytes, arrived_at: float) -> None:
        try:
            request = rtu.parse_request(frame)
        except rtu.RtuError:
            return
        meter = self.meters.get(request.unit)
        if meter is None:  # broadcast or an absent unit: nobody answers, as on a real bus
            return
        stats = self.stats[request.unit]
        stats.requests += 1
        faults = self._faults[request.unit]
        if faults.silent:
            stats.dropped += 1
            return
        t = self.timing
        # Half duplex: the request cannot have started before our last answer ended plus t3.5.
        request_end = (max(arrived_at, self._line_free_at + t.silence_s)
                       + len(frame) * t.char_s)
        response, energy = self._answer(meter, request, faults)
        if response[1] & 0x80:
            stats.exceptions += 1
        sent = faults.mangle(response)
        start = (request_end + max(meter.turnaround_ms / 1000, t.silence_s)
                 + faults.delay_ms / 1000)
        if not self._transmit(sent, start):
            return
        stats.responses += 1
        if energy is not None and sent == response:
            meter.record_served(energy)
            self.served_version += 1

    @staticmethod
    def _answer(meter: EmulatedMeter, request: rtu.Request,
                faults: Faults) -> tuple[bytes, float | None]:
        unit, function = request.unit, request.function
        code: int | None = faults.exception_code
        if code is None and not request.is_read:
            code = rtu.ExceptionCode.ILLEGAL_FUNCTION
        elif code is None and not 1 <= request.count <= min(rtu.MAX_READ,
                                                             meter.model.max_registers):
            code = rtu.ExceptionCode.ILLEGAL_DATA_VALUE
        elif code is None and request.address + request.count > 0x10000:
            code = rtu.ExceptionCode.ILLEGAL_DATA_ADDRESS
        if code is None:
            try:
                registers, energy = meter.read_registers(function, request.address, request.count)
            except UnreadableRegisters:
                code = rtu.ExceptionCode.ILLEGAL_DATA_ADDRESS
            else:
                return rtu.read_response(unit, function, registers), energy
        return rtu.exception_response(unit, function, code), None

    def _transmit(self, data: bytes, start: float) -> bool:
        """Release ``data`` so byte k is readable at ``start + (k+1)·t_c``; False if stopped.

        Each wake-up writes whatever is due by the clock, so late wake-ups do not add up.
        """
        t_c = self.timing.char_s
        per_wake = max(1, math.ceil(0.001 / t_c))  # ~1 ms of bytes per wake-up at any baud rate
        sent = 0
        while sent < len(data):
            due = min(len(data), int((time.perf_counter() - start) / t_c))
            if due > sent:
                self._write(data[sent:due])
                sent = due
                continue
            wake = start + min(len(data), sent + per_wake) * t_c
            if self._stop.wait(max(0.0, wake - time.perf_counter())):
                return False
        self._line_free_at = max(time.perf_counter(), start + len(data) * t_c)
        return True

    def _write(self, data: bytes) -> None:
        while data:
            try:
                written = os.write(self._master, data)
            except (BlockingIOError, OSError):
                # The pty input queue is full (nobody has read for a while): the bytes are lost,
                # as they would be on a wire with no listener.
                log.debug("pty full, %d bytes lost", len(data))
                return
            data = data[written:]
