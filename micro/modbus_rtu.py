# Modbus RTU framing for microcontroller meter nodes (ESP32/RP2040 + RS-485).
#
# Written in the MicroPython dialect but also runs on CPython 3.11 so the
# same file is tested by pytest and by the real MicroPython interpreter.
# Design rules, all because of small heaps and a non-moving GC:
#  - the caller owns every buffer (request, rx frame, register array); the
#    hot path (crc16, build_read_into, parse_read_into) allocates nothing
#    except small ints and, on error, the exception object;
#  - no slicing of frames: slices copy, memoryviews/indexes do not;
#  - no typing, no f-strings: neither buys anything on the device.

import struct
from array import array

try:
    from micropython import const
except ImportError:  # CPython: const() is only a compile-time hint anyway
    def const(x):
        return x

_FC_READ_HOLDING = const(3)
_FC_READ_INPUT = const(4)
_EXC_BIT = const(0x80)
_REQ_LEN = const(8)       # unit, fc, addr(2), count(2), crc(2)
_MIN_FRAME = const(5)     # exception frame: unit, fc|0x80, code, crc(2)
_MAX_COUNT = const(125)   # spec limit: 250 data bytes fit the 256-byte ADU
_MAX_UNIT = const(247)    # 0 is broadcast (no reply), 248..255 reserved


class RtuError(Exception):
    # Common base so callers can catch everything a bad bus can produce.
    pass


class FrameError(RtuError):
    # Garbage, truncation, CRC failure, wrong unit/fc/byte count: the frame
    # is unusable and the request may simply be retried.
    pass


class ExceptionResponse(RtuError):
    # The meter answered cleanly but refused (e.g. code 2 = illegal data
    # address); retrying will not help, so keep it distinct from FrameError.
    def __init__(self, unit, fc, code):
        super().__init__(code)
        self.unit = unit
        self.fc = fc
        self.code = code


def _make_table():
    # Built once at import (256 x 8 shifts, a few ms on an ESP32) so the
    # per-byte cost later is one lookup instead of eight shift/xor steps.
    # array('H') keeps it at 512 bytes instead of 256 boxed ints.
    t = array("H", bytes(512))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        t[i] = c
    return t


_CRC_TABLE = _make_table()


def crc16(buf, n=-1):
    # CRC-16/MODBUS over buf[0:n] (n=-1: whole buffer). Taking a length
    # instead of a slice lets the rx buffer be checked in place.
    if n < 0:
        n = len(buf)
    t = _CRC_TABLE
    crc = 0xFFFF
    for i in range(n):
        crc = (crc >> 8) ^ t[(crc ^ buf[i]) & 0xFF]
    return crc


def build_read_into(buf, unit, fc, addr, count):
    # Writes an FC03/FC04 request into buf[0:8] and returns 8. Bad
    # arguments are programming errors, hence ValueError, not FrameError.
    if len(buf) < _REQ_LEN:
        raise ValueError("buf < 8 bytes")
    if fc != _FC_READ_HOLDING and fc != _FC_READ_INPUT:
        raise ValueError("fc must be 3 or 4")
    if not 1 <= unit <= _MAX_UNIT:
        raise ValueError("unit out of range")
    if not 0 <= addr <= 0xFFFF:
        raise ValueError("addr out of range")
    if not 1 <= count <= _MAX_COUNT or addr + count > 0x10000:
        raise ValueError("count out of range")
    buf[0] = unit
    buf[1] = fc
    buf[2] = addr >> 8          # Modbus fields are big-endian...
    buf[3] = addr & 0xFF
    buf[4] = count >> 8
    buf[5] = count & 0xFF
    crc = crc16(buf, 6)
    buf[6] = crc & 0xFF         # ...except the CRC, which goes low byte first
    buf[7] = crc >> 8
    return _REQ_LEN


def parse_read_into(regs, frame, unit, fc, count=0, n=-1):
    # Validates a read response in frame[0:n] (n=-1: whole frame; pass the
    # readinto() result so a reused rx buffer needs no slice) and writes its
    # registers into regs (array('H') or list). Returns the register count.
    # count=0 accepts any count; otherwise it must match the request.
    if n < 0:
        n = len(frame)
    elif n > len(frame):
        raise ValueError("n > len(frame)")
    # Length first: every later check indexes the frame.
    if n < _MIN_FRAME:
        raise FrameError("short frame")
    # CRC before content: a corrupted frame's unit/fc bytes mean nothing.
    if crc16(frame, n - 2) != frame[n - 2] | (frame[n - 1] << 8):
        raise FrameError("bad crc")
    if frame[0] != unit:
        # Usually a late reply to an earlier, timed-out request.
        raise FrameError("wrong unit")
    f = frame[1]
    if f == fc | _EXC_BIT:
        if n != _MIN_FRAME:
            raise FrameError("bad exception frame length")
        raise ExceptionResponse(unit, fc, frame[2])
    if f != fc:
        raise FrameError("wrong function code")
    nbytes = frame[2]
    if nbytes == 0 or nbytes & 1 or nbytes != n - 5:
        raise FrameError("bad byte count")
    nregs = nbytes >> 1
    if count and nregs != count:
        raise FrameError("register count mismatch")
    if nregs > len(regs):
        raise FrameError("regs buffer too small")
    j = 3
    for i in range(nregs):
        regs[i] = (frame[j] << 8) | frame[j + 1]
        j += 2
    return nregs


# Decoders: 32-bit values use ABCD order (high word first), which is what
# the Eastron SDM and CHINT DTSU666 meters send.

_F32 = bytearray(4)  # scratch for float32; not reentrant (don't call from ISRs)


def decode_float32(regs, i=0):
    struct.pack_into(">HH", _F32, 0, regs[i], regs[i + 1])
    return struct.unpack_from(">f", _F32, 0)[0]


def decode_uint32(regs, i=0):
    # May exceed MicroPython's small-int range (2**30) and allocate a long;
    # unavoidable for energy counters.
    return (regs[i] << 16) | regs[i + 1]


def decode_int32(regs, i=0):
    v = (regs[i] << 16) | regs[i + 1]
    return v - 0x100000000 if v & 0x80000000 else v


def decode_uint16(regs, i=0):
    return regs[i] & 0xFFFF


def decode_int16(regs, i=0):
    v = regs[i] & 0xFFFF
    return v - 0x10000 if v & 0x8000 else v
