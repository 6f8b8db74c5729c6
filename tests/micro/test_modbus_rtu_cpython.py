"""micro/modbus_rtu.py under CPython, against the vectors shared with agent/."""

import json
import math
import sys
from array import array
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # not needed once the project is pip-installed
    sys.path.insert(0, str(ROOT))

from micro import modbus_rtu as m  # noqa: E402

VECTORS = json.loads(
    (ROOT / "tests" / "vectors" / "modbus_rtu_frames.json").read_text()
)
Case = dict[str, Any]
DECODERS = {
    "float32": m.decode_float32,
    "uint32": m.decode_uint32,
    "int32": m.decode_int32,
    "uint16": m.decode_uint16,
    "int16": m.decode_int16,
}


def case_id(case: Case) -> str:
    return str(case.get("note") or case.get("why") or case["hex"])[:60]


def test_textbook_crc() -> None:
    # The one vector everybody quotes: CRC bytes C5 CD on the wire.
    assert m.crc16(bytes.fromhex("01030000000A")) == 0xCDC5


@pytest.mark.parametrize("case", VECTORS["requests"], ids=case_id)
def test_build_request(case: Case) -> None:
    buf = bytearray(8)
    assert m.build_read_into(buf, case["unit"], case["fc"], case["address"], case["count"]) == 8
    assert bytes(buf) == bytes.fromhex(case["hex"])


@pytest.mark.parametrize(
    "args",
    [(0, 3, 0, 1), (248, 3, 0, 1), (1, 6, 0, 1), (1, 3, -1, 1), (1, 3, 0x10000, 1),
     (1, 3, 0, 0), (1, 3, 0, 126), (1, 3, 0xFFFF, 2)],
)
def test_build_rejects_bad_args(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        m.build_read_into(bytearray(8), *args)


@pytest.mark.parametrize("case", VECTORS["responses"], ids=case_id)
def test_parse_response(case: Case) -> None:
    frame = bytes.fromhex(case["hex"])
    regs = array("H", bytes(250))
    n = m.parse_read_into(regs, frame, case["unit"], case["fc"], len(case["registers"]))
    assert list(regs[:n]) == case["registers"]
    # Same frame at the start of a larger, reused rx buffer, with n given.
    rx = bytearray(256)
    rx[: len(frame)] = frame
    assert m.parse_read_into(regs, rx, case["unit"], case["fc"], 0, len(frame)) == n


@pytest.mark.parametrize("case", VECTORS["exceptions"], ids=case_id)
def test_exception_response(case: Case) -> None:
    with pytest.raises(m.ExceptionResponse) as ei:
        m.parse_read_into(array("H", bytes(250)), bytes.fromhex(case["hex"]), case["unit"], case["fc"])
    assert (ei.value.code, ei.value.unit, ei.value.fc) == (case["code"], case["unit"], case["fc"])


@pytest.mark.parametrize("case", VECTORS["malformed"], ids=case_id)
def test_malformed(case: Case) -> None:
    with pytest.raises(m.FrameError):
        m.parse_read_into(
            array("H", bytes(250)), bytes.fromhex(case["hex"]), case["unit"], case["fc"], case["count"]
        )


def test_regs_buffer_too_small() -> None:
    frame = bytes.fromhex(VECTORS["responses"][0]["hex"])
    with pytest.raises(m.FrameError):
        m.parse_read_into([0] * 4, frame, 1, 4)


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: "%s=%s" % (c["type"], c["expected"]))
def test_decode(case: Case) -> None:
    assert case["word_order"] == "ABCD"
    got = DECODERS[case["type"]](case["registers"])
    if case["type"] == "float32":
        assert math.isclose(got, case["expected"], rel_tol=0, abs_tol=case["tol"])
    else:
        assert got == case["expected"]


@settings(max_examples=2000, deadline=None)
@given(
    frame=st.binary(max_size=260),
    unit=st.integers(1, 247),
    fc=st.sampled_from([3, 4]),
    count=st.integers(0, 125),
    fix_crc=st.booleans(),
)
def test_random_bytes_raise_only_own_errors(
    frame: bytes, unit: int, fc: int, count: int, fix_crc: bool
) -> None:
    if fix_crc:  # get past the CRC check so the later checks see garbage too
        frame += m.crc16(frame).to_bytes(2, "little")
    try:
        n = m.parse_read_into(array("H", bytes(250)), frame, unit, fc, count)
    except m.RtuError:
        return
    assert 1 <= n <= 125


@settings(max_examples=500, deadline=None)
@given(unit=st.integers(1, 247), fc=st.sampled_from([3, 4]),
       regs=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125))
def test_valid_frames_round_trip(unit: int, fc: int, regs: list[int]) -> None:
    # Random garbage almost never has a valid CRC, so also feed well-formed
    # frames, and every 1-byte corruption of them.
    body = bytes([unit, fc, 2 * len(regs)]) + b"".join(r.to_bytes(2, "big") for r in regs)
    frame = body + m.crc16(body).to_bytes(2, "little")
    out = array("H", bytes(250))
    assert m.parse_read_into(out, frame, unit, fc, len(regs)) == len(regs)
    assert list(out[: len(regs)]) == regs
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x5A
        with pytest.raises(m.FrameError):  # CRC-16 catches every single-byte error
            m.parse_read_into(out, bad, unit, fc, len(regs))
