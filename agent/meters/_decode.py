"""Turn Modbus registers into numbers and back, for every type and word order a model may name.

Word orders are stored in their canonical form: ABCD (big-endian words and bytes, what every meter
in our survey uses), CDAB (low word first), BADC (bytes swapped in each word) and DCBA.

Both functions raise ValueError, and nothing else, for input they cannot handle (an unknown type
or word order, the wrong number of registers, a register outside 0..65535, a value the type cannot
hold), so callers that read the wire have one exception to turn into quality "bad".
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from typing import SupportsIndex

_FORMATS = {
    "uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i",
    "float32": ">f", "uint64": ">Q", "int64": ">q", "float64": ">d",
}
WORD_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
#: Aliases found in vendor manuals and peer configs, mapped to the canonical form.
WORD_ORDER_ALIASES = {"big": "ABCD", "msw": "ABCD", "little": "DCBA", "lsw": "CDAB",
                      "swapped": "CDAB", "byteswap": "BADC"}
TYPES = tuple(_FORMATS)
#: Integer types, with their width in bits and whether they are signed.
INTEGER_TYPES = {"uint16": (16, False), "int16": (16, True), "uint32": (32, False),
                 "int32": (32, True), "uint64": (64, False), "int64": (64, True)}


def _format(value_type: str) -> str:
    if value_type not in TYPES:
        raise ValueError(f"unknown value type {value_type!r}; known: {', '.join(TYPES)}")
    return _FORMATS[value_type]


def register_count(value_type: str) -> int:
    """Registers one value of ``value_type`` occupies; ValueError for an unknown type."""
    return struct.calcsize(_format(value_type)) // 2


def _reorder(raw: bytes, word_order: str) -> bytes:
    if word_order not in WORD_ORDERS:
        raise ValueError(f"unknown word order {word_order!r}; known: {', '.join(WORD_ORDERS)}")
    words = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if word_order in ("CDAB", "DCBA"):
        words.reverse()
    if word_order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def _word(register: object) -> int:
    """One register as an int 0..65535 (anything with ``__index__``, not bool)."""
    if isinstance(register, bool) or not isinstance(register, SupportsIndex):
        raise ValueError(f"register value {register!r} is not an integer")
    value = operator.index(register)
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"register value {register!r} is outside 0..65535")
    return value


def decode_registers(registers: Sequence[int], value_type: str, word_order: str = "ABCD") -> float:
    """Decode the registers of one value; the caller applies scale. Raise ValueError if short.

    A float register holding NaN or infinity decodes to that value; `decode_point` rejects it.
    """
    fmt = _format(value_type)
    need = struct.calcsize(fmt) // 2
    if len(registers) != need:
        raise ValueError(f"{value_type} needs {need} registers, got {len(registers)}")
    raw = b"".join(_word(r).to_bytes(2, "big") for r in registers)
    return float(struct.unpack(fmt, _reorder(raw, word_order))[0])


def encode_value(value: float, value_type: str, word_order: str = "ABCD") -> list[int]:
    """The inverse of decode_registers (used by the emulator and golden tests).

    Integers are rounded; a value the type cannot hold raises ValueError.
    """
    fmt = _format(value_type)
    try:
        packed = struct.pack(fmt, value if value_type.startswith("float") else round(value))
    except (struct.error, OverflowError, TypeError) as exc:
        raise ValueError(f"{value!r} does not fit {value_type}: {exc}") from exc
    raw = _reorder(packed, word_order)  # each reordering is its own inverse
    return [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
