"""Byte-level faults of the emulated line, against the real pymodbus client the agent uses.

Each fault must make the client's read fail (an error or a timeout, never a wrong value), and a
normal read must follow once it is cleared. Where pymodbus is more tolerant than a strict t3.5
receiver (noise after a frame), the test says so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest
import serial
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from agent.meters import LineTiming, decode_registers
from hw_tests.emulator import BusFaults, Faults, PtyBus, rtu

DTSU, SDM = 1, 2
TIMEOUT_S = 0.5  # the conftest client's
SDM_ENERGY = 0x0048  # float32, FC04


def fails(client: ModbusSerialClient, unit: int = SDM, count: int = 2, fc: int = 4,
          address: int = 0) -> bool:
    """True if the read raised (timeout, no valid frame) or came back as an error."""
    call = client.read_input_registers if fc == 4 else client.read_holding_registers
    try:
        response = call(address, count=count, device_id=unit)
    except ModbusIOException:
        return True
    return bool(response.isError())


def read_ok(client: ModbusSerialClient, unit: int = SDM, count: int = 2, fc: int = 4,
            address: int = 0) -> list[int]:
    call = client.read_input_registers if fc == 4 else client.read_holding_registers
    response = call(address, count=count, device_id=unit)
    assert not response.isError(), response
    assert len(response.registers) == count
    return list(response.registers)


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def sdm_response(registers: list[int]) -> bytes:
    return rtu.read_response(SDM, 4, registers)


# -- the stages, byte for byte ------------------------------------------------------------------

def test_wrong_unit_rewrites_the_address_and_keeps_the_crc_valid() -> None:
    frame = sdm_response([1, 2])
    sent = Faults(wrong_unit=7).mangle(frame)
    assert sent[0] == 7 and sent[1:-2] == frame[1:-2] and rtu.crc_ok(sent)


def test_truncate_keeps_the_first_k_bytes() -> None:
    frame = sdm_response([1, 2])
    assert Faults(truncate=5).mangle(frame) == frame[:5]
    assert Faults(truncate=0).mangle(frame) == b""
    assert Faults(truncate=100).mangle(frame) == frame


@pytest.mark.parametrize("where, before, after", [("before", 6, 0), ("after", 0, 6),
                                                   ("both", 6, 6)])
def test_noise_surrounds_the_intact_frame(where: str, before: int, after: int) -> None:
    frame = sdm_response([1, 2])
    sent = Faults(noise=6, noise_at=where).mangle(frame, random.Random(1))
    assert len(sent) == len(frame) + before + after
    assert sent[before:before + len(frame)] == frame
    # Reproducible from the generator, and actually random bytes, not padding.
    assert sent == Faults(noise=6, noise_at=where).mangle(frame, random.Random(1))
    assert len(set(sent[:before] + sent[len(sent) - after:])) > 1


def test_stages_apply_in_order_address_crc_cut_then_noise() -> None:
    frame = sdm_response([1, 2])
    sent = Faults(wrong_unit=9, corrupt_crc=True, truncate=len(frame),
                  noise=2, noise_at="after").mangle(frame, random.Random(0))
    readdressed = rtu.with_crc(bytes([9]) + frame[1:-2])
    assert sent[:len(frame) - 1] == readdressed[:-1]
    assert sent[len(frame) - 1] == readdressed[-1] ^ 0xFF and len(sent) == len(frame) + 2


@pytest.mark.parametrize("changes", [{"wrong_unit": 256}, {"wrong_unit": -1}, {"truncate": -1},
                                     {"noise": -1}, {"noise": 257}, {"noise_at": "middle"}])
def test_bad_fault_values_are_refused(bus: PtyBus, changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        bus.set_faults(SDM, **changes)
    assert bus.faults(SDM) == Faults()


def test_bad_bus_fault_values_are_refused(bus: PtyBus) -> None:
    with pytest.raises(ValueError):
        bus.set_bus_faults(rogue_gap_ms=0)
    with pytest.raises(TypeError):
        bus.set_bus_faults(no_such_fault=True)
    assert bus.bus_faults == BusFaults()


# -- what the client sees ----------------------------------------------------------------------

@pytest.mark.parametrize("where", ["before", "both"])
def test_noise_before_the_answer_fails_the_read_then_clears(
        bus: PtyBus, client: ModbusSerialClient, where: str) -> None:
    bus.set_faults(SDM, noise=8, noise_at=where)
    assert fails(client) and fails(client)
    assert bus.meters[SDM].truth().count == 0
    bus.clear_faults(SDM)
    read_ok(client, address=SDM_ENERGY)
    assert bus.meters[SDM].truth().count == 1


def test_noise_after_the_answer_is_tolerated_by_pymodbus_and_flushed_before_the_next_read(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    """A strict t3.5 receiver rejects a frame with garbage glued on; pymodbus's framer stops at
    the CRC and takes the value, so the emulator counts it as served. The trailing bytes are
    dropped before the next request goes out."""
    bus.set_faults(SDM, noise=12, noise_at="after")
    first = read_ok(client, address=SDM_ENERGY)
    second = read_ok(client, address=SDM_ENERGY)
    truth = bus.meters[SDM].truth()
    assert truth.count == 2
    assert (truth.first, truth.last) == (decode_registers(first, "float32"),
                                         decode_registers(second, "float32"))
    bus.clear_faults(SDM)
    read_ok(client)


@pytest.mark.parametrize("keep", [0, 1, 3, 8])  # the 9-byte answer to a 2-register read
def test_a_truncated_answer_times_out_then_clears(
        bus: PtyBus, client: ModbusSerialClient, keep: int) -> None:
    bus.set_faults(SDM, truncate=keep)
    started = time.monotonic()
    assert fails(client)
    assert time.monotonic() - started >= TIMEOUT_S * 0.9
    assert bus.stats[SDM].responses == 1 and bus.meters[SDM].truth().count == 0
    bus.clear_faults(SDM)
    read_ok(client)


@pytest.mark.parametrize("other", [DTSU, 7], ids=["another-meter-on-the-bus", "an-absent-unit"])
def test_an_answer_from_the_wrong_unit_is_refused_then_clears(
        bus: PtyBus, client: ModbusSerialClient, other: int) -> None:
    bus.set_faults(SDM, wrong_unit=other)
    assert fails(client, address=SDM_ENERGY)
    assert bus.stats[SDM].responses == 1 and bus.meters[SDM].truth().count == 0
    read_ok(client, DTSU, fc=3, address=0x2006)  # the meter it impersonated answers for itself
    bus.clear_faults(SDM)
    read_ok(client)


def test_exception_code_4_is_a_device_failure_reply(bus: PtyBus,
                                                    client: ModbusSerialClient) -> None:
    bus.set_faults(SDM, exception_code=4)
    response = client.read_input_registers(0, count=2, device_id=SDM)
    assert response.isError() and response.exception_code == 4
    bus.clear_faults(SDM)
    read_ok(client)


def test_truncation_and_noise_take_wire_time(bus: PtyBus, client: ModbusSerialClient) -> None:
    """The line stays paced: 30 noise bytes after a 9-byte answer hold the line 30 more
    character times, so a request sent at once waits for them (half duplex)."""
    t_c = LineTiming(9600).char_s
    bus.set_faults(SDM, noise=30, noise_at="after")
    read_ok(client)
    started = time.perf_counter()
    read_ok(client)  # sent while the noise of the first answer is still on the wire
    elapsed = time.perf_counter() - started
    floor = (8 + 9 + 30) * t_c + bus.meters[SDM].turnaround_ms / 1000
    assert elapsed >= floor * 0.95


def rogue_frames_heard(port: str, seconds: float) -> list[bytes]:
    """Listen on the line without asking anything; return the CRC-valid frames heard."""
    with serial.Serial(port, 9600, timeout=0.05) as line:
        line.reset_input_buffer()
        heard = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            heard += line.read(256)
    frames, buf = [], heard
    while buf:
        frame, used = rtu.split_frame(buf)
        if not used:
            break
        buf = buf[used:]
        if frame is not None:
            frames.append(frame)
    return frames


def test_a_second_master_puts_foreign_requests_on_the_line(bus: PtyBus) -> None:
    bus.set_bus_faults(second_master=True, rogue_gap_ms=20)
    frames = rogue_frames_heard(bus.port, 0.5)
    assert len(frames) >= 5
    for frame in frames:
        request = rtu.parse_request(frame)
        assert request.is_read and request.unit not in bus.meters
    assert sum(s.requests for s in bus.stats.values()) == 0  # nobody on our bus answers them
    bus.clear_faults()
    count = bus.rogue_frames
    time.sleep(0.2)
    assert bus.rogue_frames <= count + 1  # at most the frame that was on the wire
    assert rogue_frames_heard(bus.port, 0.2) == []


def test_a_second_master_garbles_our_reads_then_clears(bus: PtyBus,
                                                       client: ModbusSerialClient) -> None:
    bus.set_bus_faults(second_master=True, rogue_gap_ms=5)
    # 40 registers: an 85-byte answer (~89 ms) that a frame every ~13 ms cannot miss.
    results = [fails(client, count=40), fails(client, DTSU, count=40, fc=3, address=0x2000)]
    assert results == [True, True]
    assert bus.stats[SDM].collisions + bus.stats[DTSU].collisions == 2
    assert bus.meters[SDM].truth().count == 0
    bus.clear_faults()
    time.sleep(0.05)  # the rogue's last frame, if one was on the wire
    read_ok(client, count=40)
    read_ok(client, DTSU, count=40, fc=3, address=0x2000)


def test_a_collision_garbles_only_the_bytes_that_share_wire_time(bus: PtyBus) -> None:
    t_c = bus.timing.char_s
    start = time.perf_counter() + 0.02
    with bus._windows_lock:  # a rogue frame over bytes 10..17 of a 40-byte answer
        bus._foreign_windows.append((start + 10.2 * t_c, start + 17.5 * t_c))
    data = bytes(range(40))
    out = bus._transmit(data, start)
    assert out is not None and len(out) == 40
    assert [k for k in range(40) if out[k] != data[k]] == list(range(10, 18))


def test_a_late_answer_is_its_own_talker_and_garbles_the_next_transaction(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    """Beyond the timeout the meter still answers; meanwhile the master has moved on to the next
    meter, whose answer shares the wire with the late one: both are garbled."""
    bus.set_faults(SDM, delay_ms=600)
    assert fails(client, count=80)  # its 165-byte answer will hold the line ~620..800 ms
    # Sent at ~500 ms: DTSU's 105-byte answer runs ~530..640 ms, into the late answer.
    assert fails(client, DTSU, count=50, fc=3, address=0x2000)
    wait_until(lambda: bus.stats[SDM].responses == 1)
    assert bus.stats[SDM].collisions == 1 and bus.stats[DTSU].collisions == 1
    bus.clear_faults(SDM)
    read_ok(client, count=80)
    read_ok(client, DTSU, count=50, fc=3, address=0x2000)


def test_a_request_sent_over_a_late_answer_is_lost(bus: PtyBus,
                                                   client: ModbusSerialClient) -> None:
    bus.set_faults(SDM, delay_ms=600)
    assert fails(client, count=80)  # late answer on the wire ~630..800 ms after the request
    time.sleep(0.2)  # now in the middle of it
    assert fails(client, DTSU, fc=3, address=0x2006)
    assert bus.stats[DTSU].collisions == 1 and bus.stats[DTSU].requests == 0
    wait_until(lambda: bus.stats[SDM].responses == 1)
    bus.clear_faults(SDM)
    read_ok(client, DTSU, fc=3, address=0x2006)


def test_a_late_answer_leaves_the_line_to_others_while_it_waits(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    """Unlike a meter that holds the bus, a late one does not delay the others' answers."""
    bus.set_faults(SDM, delay_ms=900)
    assert fails(client)  # answer due ~930 ms after the request
    started = time.perf_counter()
    read_ok(client, DTSU, fc=3, address=0x2006)  # at ~500 ms: well clear of it
    assert time.perf_counter() - started < 0.2
    wait_until(lambda: bus.stats[SDM].responses == 1)
    assert bus.stats[SDM].collisions == 0 and bus.stats[DTSU].collisions == 0
