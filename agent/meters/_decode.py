"""Turn Modbus registers into numbers and back, for every type and word order a model may name.

Word orders are stored in their canonical form: ABCD (big-endian words and bytes, what every meter
in our survey uses), CDAB (low word first), BADC (bytes swapped in each word) and DCBA.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_FORMATS = {
    "uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i",
    "float32": ">f", "uint64": ">Q", "int64": ">q", "float64": ">d",
}
WORD_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
#: Aliases found in vendor manuals and peer configs, mapped to the canonical form.
WORD_ORDER_ALIASES = {"big": "ABCD", "msw": "ABCD", "little": "DCBA", "lsw": "CDAB",
                      "swapped": "CDAB", "byteswap": "BADC"}
TYPES = tuple(_FORMATS)


def register_count(value_type: str) -> int:
    return struct.calcsize(_FORMATS[value_type]) // 2


def _reorder(raw: bytes, word_order: str) -> bytes:
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if word_order in ("CDAB", "DCBA"):
        words.reverse()
    if word_order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def decode_registers(registers: Sequence[int], value_type: str, word_order: str = "ABCD") -> float:
    """Decode the registers of one value; the caller applies scale. Raise ValueError if short."""
    need = register_count(value_type)
    if len(registers) != need:
        raise ValueError(f"{value_type} needs {need} registers, got {len(registers)}")
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    return float(struct.unpack(_FORMATS[value_type], _reorder(raw, word_order))[0])


def encode_value(value: float, value_type: str, word_order: str = "ABCD") -> list[int]:
    """The inverse of decode_registers (used by the emulator and golden tests)."""
    fmt = _FORMATS[value_type]
    packed = struct.pack(fmt, value if value_type.startswith("float") else round(value))
    raw = _reorder(packed, word_order)  # each reordering is its own inverse
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
