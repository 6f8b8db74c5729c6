"""A small Modbus RTU codec for the slave side: frame and parse requests, build responses.

Our own code rather than pymodbus's framer, so the emulator shares no bug with the client it
tests, and so faults (bad CRC, cut frames, noise) can be made at the byte level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

READ_FUNCTIONS = (3, 4)
MAX_ADU = 256  # Modbus over Serial Line V1.02 §2.5.1
MAX_READ = 125  # registers per FC03/FC04 read; the response must fit MAX_ADU


class ExceptionCode(IntEnum):
    ILLEGAL_FUNCTION = 1
    ILLEGAL_DATA_ADDRESS = 2
    ILLEGAL_DATA_VALUE = 3
    SERVER_DEVICE_FAILURE = 4


class RtuError(ValueError):
    """The bytes are not a well-formed request frame."""


@dataclass(frozen=True)
class Request:
    """A request with a valid CRC. ``address`` and ``count`` are meaningful for reads only."""

    unit: int
    function: int
    address: int = 0
    count: int = 0

    @property
    def is_read(self) -> bool:
        return self.function in READ_FUNCTIONS


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS as an integer; on the wire it goes low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def read_request(unit: int, function: int, address: int, count: int) -> bytes:
    """The 8-byte FC03/FC04 request (for tests, and the frames of a second master)."""
    return with_crc(bytes([unit, function]) + address.to_bytes(2, "big") + count.to_bytes(2, "big"))


def read_response(unit: int, function: int, registers: Sequence[int]) -> bytes:
    data = b"".join(r.to_bytes(2, "big") for r in registers)
    return with_crc(bytes([unit, function, len(data)]) + data)


def exception_response(unit: int, function: int, code: int) -> bytes:
    return with_crc(bytes([unit, (function | 0x80) & 0xFF, code]))


def _expected_length(buf: bytes) -> int | None:
    """ADU length implied by the header, 0 if the header is still incomplete, None if unknown.

    Requests of the public function codes we might see from a master have a known length; anything
    else is found by CRC hunting, the way pymodbus and most slaves resynchronise.
    """
    function = buf[1]
    if function in (1, 2, 3, 4, 5, 6):
        return 8
    if function in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else 0
    return None


def split_frame(buf: bytes) -> tuple[bytes | None, int]:
    """Find the first request frame at the start of ``buf``; never raises.

    Returns ``(frame, used)``: a CRC-valid frame and the bytes it used; ``(None, n>0)`` when the
    first ``n`` bytes are garbage to drop; ``(None, 0)`` when more bytes are needed.
    """
    if len(buf) < 4:
        return None, 0
    length = _expected_length(buf)
    if length == 0:
        return None, 0
    if length is None:
        crc = 0xFFFF  # grown one byte at a time, so hunting costs O(n), not O(n²)
        for i in range(min(len(buf), MAX_ADU) - 2):
            crc = (crc >> 8) ^ _TABLE[(crc ^ buf[i]) & 0xFF]
            if i >= 1 and crc == buf[i + 1] | buf[i + 2] << 8:
                return bytes(buf[:i + 3]), i + 3
        return (None, 1) if len(buf) >= MAX_ADU else (None, 0)
    if len(buf) < length:
        return None, 0
    if crc_ok(buf[:length]):
        return bytes(buf[:length]), length
    return None, 1


def parse_request(frame: bytes) -> Request:
    """Parse one whole frame; raise RtuError if it is short, has a bad CRC or a bad read length."""
    if len(frame) < 4:
        raise RtuError(f"frame of {len(frame)} bytes is shorter than the 4-byte minimum")
    if len(frame) > MAX_ADU:
        raise RtuError(f"frame of {len(frame)} bytes exceeds the {MAX_ADU}-byte ADU")
    if not crc_ok(frame):
        raise RtuError("CRC mismatch")
    unit, function = frame[0], frame[1]
    if function not in READ_FUNCTIONS:
        return Request(unit, function)
    if len(frame) != 8:
        raise RtuError(f"FC{function:02d} request must be 8 bytes, got {len(frame)}")
    return Request(unit, function, int.from_bytes(frame[2:4], "big"),
                   int.from_bytes(frame[4:6], "big"))
