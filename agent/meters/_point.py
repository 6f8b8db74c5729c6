"""Decode one point from the registers of one read cycle, and the CT/PT factor the bus applies.

The bus reads blocks, then calls `decode_point` per point with a ``read(function, address)`` that
looks registers up in what this cycle's requests returned. Every failure to produce a usable
number is a ValueError, so the bus has one thing to catch and report as quality "bad":

- a register the point needs was not read this cycle (``read`` raised LookupError, e.g. KeyError
  from a dict or IndexError from a list; any other exception from ``read`` propagates unchanged);
- a register value that is not an integer 0..65535;
- the meter's "not available" marker (``invalid = "max"``);
- an exponent register outside ±`MAX_EXPONENT` after its offset;
- a result that is not finite: a float register holding NaN or infinity (meters say "not
  available" that way), or an overflow from scale or exponent. We raise rather than return NaN so
  that a non-finite value can never travel on as a number.

CT/PT ratios are not applied here: they are the meter's configuration, not the model's, so the bus
multiplies by `ratio_factor` itself.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import SupportsIndex

from agent.meters._decode import INTEGER_TYPES, decode_registers, encode_value
from agent.meters._model import MAX_EXPONENT, Point

#: ``read(function_code, address)``: one raw 16-bit register of this cycle.
RegisterReader = Callable[[int, int], int]


def _not_available_words(point: Point) -> list[int]:
    bits, signed = INTEGER_TYPES[point.value_type]
    largest = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    return encode_value(largest, point.value_type, point.word_order)


def _register(read: RegisterReader, function: int, address: int) -> int:
    try:
        value = read(function, address)
    except LookupError as exc:
        raise ValueError(f"register fc{function} {address:#06x} was not read this cycle") from exc
    if (isinstance(value, bool) or not isinstance(value, SupportsIndex)
            or not 0 <= operator.index(value) <= 0xFFFF):
        raise ValueError(f"register fc{function} {address:#06x} holds {value!r}, not 0..65535")
    return operator.index(value)


def decode_point(point: Point, read: RegisterReader) -> float:
    """The value of ``point`` in its measurement's unit, before any CT/PT ratio.

    Applies type, word order, ``scale``, ``exponent`` and ``sign`` in that order. Raises
    ValueError, and nothing else of its own, when the registers do not give a finite number (see
    the module docstring); exceptions from ``read`` other than LookupError propagate.
    """
    if not isinstance(point, Point):
        raise ValueError(f"not a Point: {point!r}")
    fc = point.function
    words = [_register(read, fc, a) for a in range(point.address, point.end)]
    value = decode_registers(words, point.value_type, point.word_order)
    if point.invalid == "max" and words == _not_available_words(point):
        raise ValueError(f"{point.measurement}: the meter reports 'not available'")
    if not math.isfinite(value):
        raise ValueError(f"{point.measurement}: the register holds {value}")
    value *= point.scale
    if point.exponent is not None:
        power = point.exponent.power(_register(read, fc, point.exponent.address))
        if abs(power) > MAX_EXPONENT:
            raise ValueError(f"{point.measurement}: exponent {power} is outside "
                             f"±{MAX_EXPONENT} (register {point.exponent.address:#06x})")
        # Dividing by an exact power of ten keeps 2401 × 10^-1 at 240.1, not 240.10000000000002.
        value = value * 10 ** power if power >= 0 else value / 10 ** -power
    if point.sign is not None and _register(read, fc, point.sign.address) >> point.sign.bit & 1:
        value = -value
    if not math.isfinite(value):
        raise ValueError(f"{point.measurement}: {value} after scaling")
    return value + 0.0  # -0.0 (a zero magnitude with its sign bit set) reads as 0.0


def ratio_factor(point: Point, ct: float, pt: float) -> float:
    """What the bus multiplies ``decode_point``'s result by for the meter's CT and PT ratios.

    1 for a point without ``ratio``; ``ct`` for "ct", ``pt`` for "pt", ``ct × pt`` for "ctpt".
    Raises ValueError unless both ratios are finite and positive.
    """
    for name, value in (("ct", ct), ("pt", pt)):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value <= 0):
            raise ValueError(f"{name} ratio must be a finite number above 0, not {value!r}")
    if point.ratio is None:
        return 1.0
    return {"ct": float(ct), "pt": float(pt), "ctpt": float(ct) * float(pt)}[point.ratio]
