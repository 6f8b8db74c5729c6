"""The emulated bus polled by the real pymodbus client the agent uses (RTU on the pty)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import serial
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from agent.meters import LineTiming, decode_registers, models
from hw_tests.emulator import EmulatedMeter, PtyBus, rtu

MakeClient = Callable[..., ModbusSerialClient]  # the conftest factory

DTSU, SDM = 1, 2
TIMEOUT_S = 0.5


def read(client: ModbusSerialClient, unit: int, fc: int, address: int, count: int) -> list[int]:
    call = client.read_holding_registers if fc == 3 else client.read_input_registers
    response = call(address, count=count, device_id=unit)
    assert not response.isError(), response
    return list(response.registers)


def energy(client: ModbusSerialClient, unit: int) -> float:
    point = {DTSU: models()["chint-dtsu666"], SDM: models()["eastron-sdm630"]}[unit].points[
        "active_energy_import"]
    registers = read(client, unit, point.function, point.address, 2)
    return decode_registers(registers, point.value_type, point.word_order) * point.scale


def timed_out(client: ModbusSerialClient, unit: int) -> bool:
    try:
        response = client.read_input_registers(0, count=2, device_id=unit)
    except ModbusIOException:
        return True
    return bool(response.isError())


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_voltage_of_both_meters_decodes_to_about_230_v(client: ModbusSerialClient) -> None:
    dtsu = decode_registers(read(client, DTSU, 3, 0x2006, 2), "float32") * 0.1  # 0.1 V units
    sdm = decode_registers(read(client, SDM, 4, 0x0000, 2), "float32")
    assert dtsu == pytest.approx(230, abs=10) and sdm == pytest.approx(230, abs=10)


def test_an_absent_unit_stays_silent_and_the_client_times_out(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    started = time.monotonic()
    with pytest.raises(ModbusIOException):
        client.read_input_registers(0, count=2, device_id=7)
    assert time.monotonic() - started >= TIMEOUT_S * 0.9
    assert sum(s.requests for s in bus.stats.values()) == 0


def test_energy_grows_between_reads_and_matches_the_ground_truth_exactly(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    first = {unit: energy(client, unit) for unit in (DTSU, SDM)}
    time.sleep(0.3)  # three emulated minutes
    last = {unit: energy(client, unit) for unit in (DTSU, SDM)}
    for unit in (DTSU, SDM):
        truth = bus.meters[unit].truth()
        assert last[unit] > first[unit]
        assert (truth.first, truth.last, truth.count) == (first[unit], last[unit], 2)
        assert truth.delta == last[unit] - first[unit]
    assert bus.stats[DTSU].requests == bus.stats[SDM].requests == 2


def test_an_80_register_read_takes_its_wire_time_at_9600_8n1(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    timing = LineTiming(9600)
    ideal = (8 + 5 + 160) * timing.char_s + 2 * timing.silence_s  # 187.5 ms, meters.md §2.4
    # Our meter's own floor: request on the wire, its 20 ms turnaround, the 165-byte response.
    floor = (8 + 165) * timing.char_s + bus.meters[SDM].turnaround_ms / 1000
    durations = []
    for _ in range(5):
        started = time.perf_counter()
        assert len(read(client, SDM, 4, 0, 80)) == 80
        durations.append(time.perf_counter() - started)
    print(f"80 registers @9600 8N1: ideal {ideal * 1000:.1f} ms, emulator floor "
          f"{floor * 1000:.1f} ms, measured {', '.join(f'{d * 1000:.1f}' for d in durations)} ms")
    assert min(durations) >= max(ideal, floor)
    assert sorted(durations)[2] <= floor + 0.150  # median: host overhead on a loaded CI machine


def test_pacing_follows_the_line_settings_at_19200_8e1(make_client: MakeClient) -> None:
    model = models()["eastron-sdm630"]
    with PtyBus([EmulatedMeter(model, 5, turnaround_ms=0)], baudrate=19200, parity="E") as bus:
        # The client stays 8N1: a pty ignores line settings, and some kernels refuse PARENB on
        # one (EINVAL from tcsetattr), so the parity exists only in the bus's pacing.
        client = make_client(bus.port, baudrate=19200)
        timing = LineTiming(19200, "E")
        floor = (8 + 165) * timing.char_s + timing.silence_s  # 11-bit characters, t3.5 turnaround
        started = time.perf_counter()
        read(client, 5, 4, 0, 80)
        assert floor <= time.perf_counter() - started <= floor + 0.150


def test_exception_02_outside_the_map_03_above_max_registers_01_for_writes(
        client: ModbusSerialClient) -> None:
    outside = client.read_holding_registers(0x3000, count=2, device_id=DTSU)
    too_many = client.read_input_registers(0, count=81, device_id=SDM)  # Eastron stops at 80
    write = client.write_register(0, 1, device_id=SDM)
    assert [r.exception_code for r in (outside, too_many, write)] == [2, 3, 1]


def test_a_strict_meter_rejects_a_read_across_a_hole_with_exception_02(
        make_client: MakeClient) -> None:
    model = models()["chint-dtsu666"]
    with PtyBus([EmulatedMeter(model, 1, strict_holes=True)]) as bus:
        client = make_client(bus.port)
        assert client.read_holding_registers(0x2000, count=70, device_id=1).exception_code == 2
        assert len(read(client, 1, 3, 0x2000, 0x22)) == 0x22


def test_silent_fault_times_out_then_clears(bus: PtyBus, client: ModbusSerialClient) -> None:
    bus.set_faults(SDM, silent=True)
    assert timed_out(client, SDM)
    assert bus.stats[SDM].dropped == 1
    bus.clear_faults(SDM)
    assert len(read(client, SDM, 4, 0, 2)) == 2


def test_corrupt_crc_is_an_error_and_is_not_counted_as_served(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    bus.set_faults(SDM, corrupt_crc=True)
    with pytest.raises(ModbusIOException):
        energy(client, SDM)
    assert bus.meters[SDM].truth().count == 0
    bus.clear_faults()
    energy(client, SDM)
    assert bus.meters[SDM].truth().count == 1


def test_exception_code_fault_answers_that_exception(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    bus.set_faults(DTSU, exception_code=2)
    response = client.read_holding_registers(0x2006, count=2, device_id=DTSU)
    assert response.isError() and response.exception_code == 2
    assert bus.stats[DTSU].exceptions == 1
    assert len(read(client, SDM, 4, 0, 2)) == 2  # the other meter is unaffected


def test_delay_fault_beyond_the_timeout_then_normal_reads_again(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    bus.set_faults(SDM, delay_ms=800)
    assert timed_out(client, SDM)
    # The late answer still goes out (a real meter does not know the master gave up); let it
    # pass before the next request, as the agent's next cycle would.
    wait_until(lambda: bus.stats[SDM].responses == 1)
    bus.clear_faults(SDM)
    assert len(read(client, SDM, 4, 0, 2)) == 2


def test_delay_fault_within_the_timeout_only_makes_the_answer_late(
        bus: PtyBus, client: ModbusSerialClient) -> None:
    bus.set_faults(SDM, delay_ms=150)
    started = time.perf_counter()
    read(client, SDM, 4, 0, 2)
    assert time.perf_counter() - started >= 0.150 + 0.020


def test_the_line_survives_the_client_closing_and_reopening(
        bus: PtyBus, make_client: MakeClient) -> None:
    for _ in range(3):
        client = make_client(bus.port)
        assert len(read(client, DTSU, 3, 0x2006, 2)) == 2
        client.close()  # type: ignore[no-untyped-call]


def test_link_points_at_the_pty_and_goes_away_on_close(tmp_path: Path) -> None:
    link = tmp_path / "ttyNengtan"
    link.symlink_to("/nonexistent")  # a stale link from an earlier run is replaced
    bus = PtyBus([EmulatedMeter(models()["eastron-sdm630"], 1)], link=link).start()
    assert os.readlink(link) == bus.port
    bus.close()
    bus.close()  # idempotent
    assert not link.is_symlink()


def test_a_regular_file_at_the_link_path_is_not_clobbered(tmp_path: Path) -> None:
    link = tmp_path / "ttyNengtan"
    link.write_text("keep me")
    with pytest.raises(FileExistsError):
        PtyBus([EmulatedMeter(models()["eastron-sdm630"], 1)], link=link)
    assert link.read_text() == "keep me"


def test_duplicate_units_and_bad_faults_are_refused(bus: PtyBus) -> None:
    model = models()["eastron-sdm630"]
    with pytest.raises(ValueError):
        PtyBus([EmulatedMeter(model, 1), EmulatedMeter(model, 1)])
    with pytest.raises(ValueError):
        bus.set_faults(SDM, delay_ms=-1)


def raw_exchange(port: str, wire: bytes, expect: int, timeout: float = 1.0) -> bytes:
    """Write raw bytes to the bus and collect ``expect`` bytes back (fewer on timeout)."""
    with serial.Serial(port, 9600, timeout=0.05) as line:
        line.write(wire)
        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < expect and time.monotonic() < deadline:
            got += line.read(expect - len(got))
        return got


@pytest.mark.parametrize("noise", [b"\xff\x01\x03", b"\x00\x2b\x17", b"\x01\x03\x20\x06"])
def test_a_request_behind_line_noise_is_still_answered(bus: PtyBus, noise: bytes) -> None:
    reply = raw_exchange(bus.port, noise + rtu.read_request(DTSU, 3, 0x2006, 2), 9)
    assert rtu.crc_ok(reply) and reply[:3] == bytes([DTSU, 3, 4])
    assert bus.stats[DTSU].requests == 1


def test_a_truncated_request_is_dropped_and_the_next_one_served(bus: PtyBus) -> None:
    request = rtu.read_request(SDM, 4, 0, 2)
    assert raw_exchange(bus.port, request[:5], 9, timeout=0.2) == b""
    reply = raw_exchange(bus.port, request, 9)
    assert rtu.crc_ok(reply) and reply[:3] == bytes([SDM, 4, 4])
    assert bus.stats[SDM].requests == 1
