"""The emulator's own RTU codec, against the frame vectors shared with agent/ and micro/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hw_tests.emulator import rtu

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "modbus_rtu_frames.json")
                     .read_text(encoding="utf-8"))


def frame(text: str) -> bytes:
    return bytes.fromhex(text)


def test_crc_of_the_textbook_request_is_c5_cd_on_the_wire() -> None:
    assert rtu.crc16(frame("01 03 00 00 00 0A")) == 0xCDC5
    assert rtu.with_crc(frame("01 03 00 00 00 0A"))[-2:] == frame("C5 CD")


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda c: c["note"][:40])
def test_requests_build_and_parse_like_the_shared_vectors(case: dict[str, Any]) -> None:
    wire = frame(case["hex"])
    assert rtu.read_request(case["unit"], case["fc"], case["address"], case["count"]) == wire
    assert rtu.parse_request(wire) == rtu.Request(case["unit"], case["fc"], case["address"],
                                                  case["count"])
    assert rtu.split_frame(wire) == (wire, 8)


@pytest.mark.parametrize("case", VECTORS["responses"], ids=lambda c: c["note"][:40])
def test_read_responses_match_the_shared_vectors(case: dict[str, Any]) -> None:
    assert rtu.read_response(case["unit"], case["fc"], case["registers"]) == frame(case["hex"])


@pytest.mark.parametrize("case", VECTORS["exceptions"], ids=lambda c: c["note"][:40])
def test_exception_responses_match_the_shared_vectors(case: dict[str, Any]) -> None:
    assert rtu.exception_response(case["unit"], case["fc"], case["code"]) == frame(case["hex"])


def test_garbage_before_a_request_is_dropped_byte_by_byte_until_the_crc_matches() -> None:
    good = rtu.read_request(2, 3, 0x2000, 70)
    buf = frame("FF 01 03") + good
    dropped = 0
    while True:
        found, used = rtu.split_frame(buf)
        assert used, "a whole request is in the buffer: the framer must not wait for more"
        buf = buf[used:]
        if found is not None:
            break
        dropped += used
    assert (found, dropped, buf) == (good, 3, b"")


def test_an_incomplete_request_waits_for_more_bytes() -> None:
    assert rtu.split_frame(rtu.read_request(1, 4, 0, 2)[:7]) == (None, 0)
    assert rtu.split_frame(b"\x01") == (None, 0)


def test_write_multiple_is_framed_by_its_byte_count_and_parsed_as_not_a_read() -> None:
    wire = rtu.with_crc(frame("01 10 00 00 00 02 04 00 01 00 02"))
    assert rtu.split_frame(wire + b"\x00") == (wire, len(wire))
    request = rtu.parse_request(wire)
    assert (request.function, request.is_read) == (16, False)


def test_an_unknown_function_code_is_found_by_crc_hunting() -> None:
    wire = rtu.with_crc(frame("01 2B 0E 01 00"))  # read device identification
    assert rtu.split_frame(wire) == (wire, len(wire))


@pytest.mark.parametrize("wire, why", [
    (b"\x01\x03\x00", "shorter than 4 bytes"),
    (frame("01 03 00 00 00 0A C5 CC"), "bad crc"),
    (rtu.with_crc(frame("01 03 00 00 00")), "read request of 7 bytes"),
    (bytes(300), "longer than an ADU"),
])
def test_malformed_requests_raise_rtu_error(wire: bytes, why: str) -> None:
    with pytest.raises(rtu.RtuError):
        rtu.parse_request(wire)


@given(st.binary(max_size=300))
def test_parsing_arbitrary_bytes_raises_nothing_but_rtu_error(data: bytes) -> None:
    try:
        request = rtu.parse_request(data)
    except rtu.RtuError:
        return
    assert rtu.crc_ok(data) and 0 <= request.unit <= 255


@given(st.binary(max_size=300))
def test_framing_arbitrary_bytes_never_raises_and_yields_only_crc_valid_prefixes(
        data: bytes) -> None:
    found, used = rtu.split_frame(data)
    assert 0 <= used <= len(data)
    if found is not None:
        assert data.startswith(found) and used == len(found) and rtu.crc_ok(found)


@given(st.integers(0, 255), st.sampled_from([3, 4]), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_any_read_request_round_trips(unit: int, fc: int, address: int, count: int) -> None:
    assert rtu.parse_request(rtu.read_request(unit, fc, address, count)) == rtu.Request(
        unit, fc, address, count)
