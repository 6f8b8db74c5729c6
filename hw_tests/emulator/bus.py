"""An RS-485 line of emulated meters behind a pseudo-terminal, paced like the real wire.

A pty delivers bytes instantly and ignores the baud rate (shared/reference/meters.md §5.1), so the
serving thread does the pacing itself: it answers no earlier than the request's own wire time plus
the meter's turnaround, and releases the response so that it lasts (5 + 2n) character times.
Other talkers (a second master, a meter answering late) share the same clock: where two
transmissions overlap, the master receives garbage, as on a real pair of wires.
"""

from __future__ import annotations

import logging
import math
import os
import random
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from agent.meters import LineTiming
from hw_tests.emulator import rtu
from hw_tests.emulator.plant import EmulatedMeter, EnergyTruth, UnreadableRegisters

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.5  # select timeout when idle: bounds nothing but a forgotten wake-up
NOISE_AT = ("before", "after", "both")
_WINDOWS_KEPT = 256  # other talkers' recent frames, for telling what they collided with


@dataclass(frozen=True)
class Faults:
    """Faults injected for one unit, each applied at its own stage of answering a request.

    Frozen and swapped whole (``PtyBus.set_faults``), so the serving thread, which takes one
    snapshot per request, never sees half of a change made from another thread. The stages:

    * whether to answer: ``silent`` drops the request (the master times out);
    * what to answer: ``exception_code`` replaces every answer by that exception reply;
    * which bytes go out (``mangle``), in this order: ``wrong_unit`` rewrites the unit id of the
      frame and recomputes the CRC (a valid frame from the wrong slave, e.g. two meters set to one
      address, or a gateway that renumbers); ``corrupt_crc`` flips the last CRC byte;
      ``truncate`` keeps the first K bytes only (a meter that browns out mid-frame);
      ``noise`` puts N random bytes on the line ``noise_at`` "before", "after" or "both" sides of
      the frame, with no silence between them and it, so for a t3.5 receiver they are one frame;
    * when: ``delay_ms`` after the meter's own turnaround. A delayed answer leaves on its own,
      while the line goes on serving others: beyond the master's timeout it still goes out, as a
      real meter's would, and collides with whatever it overlaps (the master's next request, or
      another meter's answer), garbling both (see ``BusFaults`` for how collisions are modelled).

    Noise and truncation take wire time like any byte: the line stays paced.
    """

    silent: bool = False
    delay_ms: float = 0.0
    corrupt_crc: bool = False
    exception_code: int | None = None
    wrong_unit: int | None = None
    truncate: int | None = None
    noise: int = 0
    noise_at: str = "before"

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        if self.exception_code is not None and not 1 <= self.exception_code <= 255:
            raise ValueError("exception_code must be 1..255")
        if self.wrong_unit is not None and not 0 <= self.wrong_unit <= 255:
            raise ValueError("wrong_unit must be 0..255")
        if self.truncate is not None and self.truncate < 0:
            raise ValueError("truncate must be >= 0 bytes")
        if not 0 <= self.noise <= rtu.MAX_ADU:
            raise ValueError(f"noise must be 0..{rtu.MAX_ADU} bytes")
        if self.noise_at not in NOISE_AT:
            raise ValueError(f"noise_at must be one of {', '.join(NOISE_AT)}")

    def mangle(self, frame: bytes, rng: random.Random | None = None) -> bytes:
        """The bytes actually sent for a well-formed response ``frame``; ``rng`` draws noise."""
        if self.wrong_unit is not None:
            frame = rtu.with_crc(bytes([self.wrong_unit]) + frame[1:-2])
        if self.corrupt_crc:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        if self.truncate is not None:
            frame = frame[:self.truncate]
        if self.noise:
            rng = rng or random.Random(0)
            if self.noise_at in ("before", "both"):
                frame = rng.randbytes(self.noise) + frame
            if self.noise_at in ("after", "both"):
                frame += rng.randbytes(self.noise)
        return frame


@dataclass(frozen=True)
class BusFaults:
    """Faults of the whole line, swapped whole like ``Faults`` (``PtyBus.set_bus_faults``).

    ``second_master``: a rogue master (a second gateway, a technician's laptop left polling) puts
    foreign read requests on the line at random moments: 8-byte FC03/FC04 frames to a unit that is
    not on this bus (nobody answers them), separated by random silences of mean ``rogue_gap_ms``.
    It does not listen before talking, so it collides with our traffic: every byte of an answer
    that shares wire time with a rogue frame is garbled (XOR with a random non-zero byte) and goes
    out instead of the rogue's byte; a request that shares wire time with one is lost (the meter
    sees a bad CRC and stays silent). The rogue's bytes that collide with nothing reach the master.
    """

    second_master: bool = False
    rogue_gap_ms: float = 30.0

    def __post_init__(self) -> None:
        if self.rogue_gap_ms <= 0:
            raise ValueError("rogue_gap_ms must be > 0")


@dataclass
class UnitStats:
    """Counters of one unit; written by the serving thread (and by a late answer's own)."""

    requests: int = 0  # CRC-valid requests addressed to the unit
    responses: int = 0  # frames that went out (normal, exception or mangled)
    exceptions: int = 0
    dropped: int = 0  # requests left unanswered on purpose (``silent``)
    collisions: int = 0  # requests lost or answers garbled by another talker on the line


class PtyBus:
    """Meters sharing one emulated line; the agent opens ``port`` (or ``link``) as a serial port.

    Args:
        meters: the emulated meters, with distinct unit ids.
        baudrate, parity, stopbits: the line settings the pacing follows (8 data bits).
        link: optional symlink to the pty, replaced atomically, removed on close.
        seed: makes the random bytes of faults (noise, collisions, a second master) reproducible.
    """

    def __init__(self, meters: Iterable[EmulatedMeter], *, baudrate: int = 9600,
                 parity: str = "N", stopbits: int = 1, link: str | os.PathLike[str] | None = None,
                 seed: int | None = None) -> None:
        if parity not in ("N", "E", "O") or stopbits not in (1, 2) or baudrate <= 0:
            raise ValueError(f"unsupported line settings {baudrate} 8{parity}{stopbits}")
        self.timing = LineTiming(baudrate, parity, stopbits)
        self.meters: dict[int, EmulatedMeter] = {}
        for meter in meters:
            if meter.unit in self.meters:
                raise ValueError(f"two meters with unit {meter.unit}")
            self.meters[meter.unit] = meter
        self.stats = {unit: UnitStats() for unit in self.meters}
        self.served_version = 0  # bumped when a counter value reached the wire intact
        self.rogue_frames = 0  # frames a second master put on the line
        self._faults = {unit: Faults() for unit in self.meters}
        self._bus_faults = BusFaults()
        self._faults_lock = threading.Lock()
        self._rng = random.Random(f"line {seed}")  # the serving thread's draws only
        self._rogue_rng = random.Random(f"rogue {seed}")  # the rogue thread's draws only
        # Wire time of other talkers' recent frames (a second master, late answers), and of the
        # answer the serving thread is sending now; whoever overlaps the other garbles it.
        self._foreign_windows: deque[tuple[float, float]] = deque(maxlen=_WINDOWS_KEPT)
        self._windows_lock = threading.Lock()
        self._tx_window = (0.0, 0.0)
        self._talkers: list[threading.Thread] = []  # late answers on their way
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
        self._rogue_wake = threading.Event()
        self._rogue_thread = threading.Thread(target=self._rogue, name=f"rogue {self.port}",
                                              daemon=True)
        self._closed = False
        self.link = Path(link) if link is not None else None
        if self.link is not None:
            self._make_link(self.link)

    # -- control, from any thread ------------------------------------------------------------

    def start(self) -> PtyBus:
        self._thread.start()
        self._rogue_thread.start()
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
        """Clear the faults of ``unit``; with no unit, of every unit and of the line itself."""
        with self._faults_lock:
            for u in self._faults if unit is None else [unit]:
                self._faults[u] = Faults()
            if unit is None:
                self._bus_faults = BusFaults()

    @property
    def bus_faults(self) -> BusFaults:
        return self._bus_faults

    def set_bus_faults(self, **changes: object) -> BusFaults:
        """Change faults of the whole line (``second_master=True``, ...); effective at once."""
        with self._faults_lock:
            self._bus_faults = replace(self._bus_faults, **changes)  # type: ignore[arg-type]
            self._rogue_wake.set()
            return self._bus_faults

    def truth(self) -> dict[int, EnergyTruth]:
        return {unit: meter.truth() for unit, meter in self.meters.items()}

    def close(self) -> None:
        """Stop serving, join the thread, close every descriptor and remove the link."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._rogue_wake.set()
        os.write(self._wake_w, b"x")
        for thread in (self._thread, self._rogue_thread, *self._talkers):
            if thread.is_alive():
                thread.join(timeout=5)
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
        t = self.timing
        # Half duplex: the request cannot have started before our last answer ended plus t3.5.
        request_start = max(arrived_at, self._line_free_at + t.silence_s)
        request_end = request_start + len(frame) * t.char_s
        if self._bus_faults.second_master or self._windows_since(request_start):
            # Another talker may yet start while the request is on the wire: decide at its end
            # (the answer cannot start earlier anyway).
            if self._stop.wait(max(0.0, request_end - time.perf_counter())):
                return
            if self._collides(request_start, request_end):
                stats.collisions += 1  # someone talked over it: the meter saw a bad CRC
                return
        stats.requests += 1
        faults = self._faults[request.unit]
        if faults.silent:
            stats.dropped += 1
            return
        response, counters = self._answer(meter, request, faults)
        if response[1] & 0x80:
            stats.exceptions += 1
        sent = faults.mangle(response, self._rng)
        start = (request_end + max(meter.turnaround_ms / 1000, t.silence_s)
                 + faults.delay_ms / 1000)
        if not sent.startswith(response):
            counters = {}  # cut, re-addressed or behind noise: no receiver can count on it
        if faults.delay_ms:
            self._answer_late(meter, counters, sent, start)
            return
        out = self._transmit(sent, start)
        if out is not None:
            self._answered(meter, counters, intact=out == sent)

    def _answered(self, meter: EmulatedMeter, counters: dict[str, float], *,
                  intact: bool) -> None:
        """Count an answer that went out; ``counters`` are what it carried if it left whole and
        first (trailing noise, which a receiver hunting for frames ignores, aside)."""
        stats = self.stats[meter.unit]
        stats.responses += 1
        if not intact:
            stats.collisions += 1  # another talker garbled it
        elif counters:
            meter.record_counters(counters)
            self.served_version += 1

    def _answer_late(self, meter: EmulatedMeter, counters: dict[str, float], sent: bytes,
                     start: float) -> None:
        """Send a delayed answer from its own thread, as another talker: meanwhile the line
        serves other requests, and where the two overlap both are garbled."""
        end = start + len(sent) * self.timing.char_s
        with self._windows_lock:
            self._foreign_windows.append((start, end))  # known now: requests can collide with it

        def talk() -> None:
            intact = self._talk(sent, start)
            if intact is not None:
                self._answered(meter, counters, intact=intact)

        self._talkers = [t for t in self._talkers if t.is_alive()]
        talker = threading.Thread(target=talk, name=f"late answer {meter.unit}", daemon=True)
        self._talkers.append(talker)
        talker.start()

    @staticmethod
    def _answer(meter: EmulatedMeter, request: rtu.Request,
                faults: Faults) -> tuple[bytes, dict[str, float]]:
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
                registers, counters = meter.read(function, request.address, request.count)
            except UnreadableRegisters:
                code = rtu.ExceptionCode.ILLEGAL_DATA_ADDRESS
            else:
                return rtu.read_response(unit, function, registers), counters
        return rtu.exception_response(unit, function, code), {}

    def _transmit(self, data: bytes, start: float) -> bytes | None:
        """Release ``data`` so byte k is readable at ``start + (k+1)·t_c``; None if stopped.

        Each wake-up writes whatever is due by the clock, so late wake-ups do not add up. Returns
        the bytes that went out: ``data``, unless another talker garbled some of them.
        """
        t_c = self.timing.char_s
        per_wake = max(1, math.ceil(0.001 / t_c))  # ~1 ms of bytes per wake-up at any baud rate
        self._tx_window = (start, start + len(data) * t_c)
        out = bytearray(data)
        sent = 0
        while sent < len(out):
            due = min(len(out), int((time.perf_counter() - start) / t_c))
            if due > sent:
                self._garble(out, sent, due, start)
                self._write(bytes(out[sent:due]))
                sent = due
                continue
            wake = start + min(len(out), sent + per_wake) * t_c
            if self._stop.wait(max(0.0, wake - time.perf_counter())):
                return None
        self._line_free_at = max(time.perf_counter(), start + len(out) * t_c)
        return bytes(out)

    # -- other talkers: a second master, late answers ----------------------------------------------

    def _windows_since(self, t: float) -> list[tuple[float, float]]:
        with self._windows_lock:
            return [w for w in self._foreign_windows if w[1] > t]

    def _collides(self, begin: float, end: float) -> bool:
        return any(w0 < end and begin < w1 for w0, w1 in self._windows_since(begin))

    def _garble(self, out: bytearray, first: int, stop: int, start: float) -> None:
        """XOR bytes ``first``..``stop`` of an answer starting at ``start`` that share wire time
        with another talker's frame: two drivers on one pair give the receiver neither byte."""
        t_c = self.timing.char_s
        windows = self._windows_since(start + first * t_c)
        if not windows:
            return
        for k in range(first, stop):
            b0, b1 = start + k * t_c, start + (k + 1) * t_c
            if any(w0 < b1 and b0 < w1 for w0, w1 in windows):
                out[k] ^= self._rng.randint(1, 255)

    def _rogue_frame(self) -> bytes:
        rng = self._rogue_rng
        strangers = [u for u in range(1, 248) if u not in self.meters] or [248]
        return rtu.read_request(rng.choice(strangers), rng.choice(rtu.READ_FUNCTIONS),
                                rng.randrange(0x10000 - rtu.MAX_READ), rng.randint(1, rtu.MAX_READ))

    def _rogue(self) -> None:
        """The second master: idle until switched on, then a frame after each random silence."""
        t_c = self.timing.char_s
        while not self._stop.is_set():
            gap_ms = self._bus_faults.rogue_gap_ms
            if not self._bus_faults.second_master:
                self._rogue_wake.wait(_IDLE_POLL_S)
                self._rogue_wake.clear()
                continue
            if self._stop.wait(self._rogue_rng.expovariate(1000 / gap_ms)):
                return
            if not self._bus_faults.second_master:
                continue
            frame = self._rogue_frame()
            start = time.perf_counter()
            with self._windows_lock:
                self._foreign_windows.append((start, start + len(frame) * t_c))
            self.rogue_frames += 1
            if self._talk(frame, start) is None:
                return

    def _talk(self, frame: bytes, start: float) -> bool | None:
        """Put ``frame`` on the line from ``start`` as a talker other than the serving thread.

        Its wire time must already be among the foreign windows, so that the answer the serving
        thread sends over it is garbled there; the bytes of ``frame`` that share wire time with
        that answer are not written (one garbled byte per character time reaches the master).
        Returns whether all of ``frame`` went out untouched; None if the bus stopped. (Two such
        talkers at once, a second master over a late answer, do not garble each other.)
        """
        t_c = self.timing.char_s
        per_wake = max(1, math.ceil(0.001 / t_c))
        intact = True
        sent = 0
        while sent < len(frame):
            due = min(len(frame), int((time.perf_counter() - start) / t_c))
            if due > sent:
                tx0, tx1 = self._tx_window
                keep = bytearray()
                for k in range(sent, due):
                    if tx0 < start + (k + 1) * t_c and start + k * t_c < tx1:
                        intact = False
                    else:
                        keep.append(frame[k])
                self._write(bytes(keep))
                sent = due
                continue
            wake = start + min(len(frame), sent + per_wake) * t_c
            if self._stop.wait(max(0.0, wake - time.perf_counter())):
                return None
        return intact

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
