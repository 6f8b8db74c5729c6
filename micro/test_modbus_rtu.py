# On-target tests for modbus_rtu.py, runnable by MicroPython itself: no
# pytest, no unittest (not on most firmware), just test_* functions run at
# the bottom. tests/micro/run_micropython.mjs runs it under the WebAssembly
# port; on a board: `mpremote mount . run micro/test_modbus_rtu.py`.
# Checks the same vectors as the CPython suite, plus things only the real
# dialect can show (heap allocation in the hot path).

import gc
import json
import sys
from array import array

try:
    import modbus_rtu as m          # flat layout, as on the device
except ImportError:
    sys.path.append("micro")        # run from the repo root
    import modbus_rtu as m

# Repo layout first (host runs, mpremote mount), then a flat copy on a board.
for _p in ("tests/vectors/modbus_rtu_frames.json", "modbus_rtu_frames.json"):
    try:
        with open(_p) as _f:
            V = json.load(_f)
        break
    except OSError:
        pass
else:
    raise OSError("modbus_rtu_frames.json not found")

DECODERS = {
    "float32": m.decode_float32,
    "uint32": m.decode_uint32,
    "int32": m.decode_int32,
    "uint16": m.decode_uint16,
    "int16": m.decode_int16,
}
REGS = array("H", bytes(250))   # one register buffer, reused like on a node


def frame_of(case):
    return bytes.fromhex(case["hex"])


def test_textbook_crc():
    assert m.crc16(b"\x01\x03\x00\x00\x00\x0a") == 0xCDC5


def test_requests():
    buf = bytearray(8)
    for c in V["requests"]:
        assert m.build_read_into(buf, c["unit"], c["fc"], c["address"], c["count"]) == 8
        assert bytes(buf) == frame_of(c), c["hex"]


def test_bad_request_args():
    buf = bytearray(8)
    for args in ((0, 3, 0, 1), (248, 3, 0, 1), (1, 6, 0, 1), (1, 3, 0, 0), (1, 3, 0, 126)):
        try:
            m.build_read_into(buf, *args)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (args,))


def test_responses():
    for c in V["responses"]:
        want = c["registers"]
        n = m.parse_read_into(REGS, frame_of(c), c["unit"], c["fc"], len(want))
        assert n == len(want) and list(REGS[:n]) == want, c["hex"]


def test_exceptions():
    for c in V["exceptions"]:
        try:
            m.parse_read_into(REGS, frame_of(c), c["unit"], c["fc"])
        except m.ExceptionResponse as e:
            assert e.code == c["code"] and e.unit == c["unit"] and e.fc == c["fc"]
            continue
        raise AssertionError("no exception for " + c["hex"])


def test_malformed():
    for c in V["malformed"]:
        try:
            m.parse_read_into(REGS, frame_of(c), c["unit"], c["fc"], c["count"])
        except m.FrameError:
            continue
        raise AssertionError("accepted: " + c["why"])


def test_decode():
    for c in V["decode"]:
        assert c["word_order"] == "ABCD"
        got = DECODERS[c["type"]](c["registers"])
        # tol also absorbs single-precision float builds (most ESP32 firmware)
        assert abs(got - c["expected"]) <= c["tol"], (c, got)


def test_hot_path_does_not_allocate():
    # The point of the caller-owned-buffer API: a poll loop must not churn
    # the heap. Only measurable on MicroPython (CPython has no gc.mem_alloc).
    if not hasattr(gc, "mem_alloc"):
        return
    c = V["responses"][0]
    rx = bytearray(256)
    f = frame_of(c)
    rx[:len(f)] = f
    n, req = len(f), bytearray(8)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        m.build_read_into(req, 1, 4, 0, 80)
        m.parse_read_into(REGS, rx, 1, 4, 80, n)
        used = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert used == 0, "hot path allocated %d bytes" % used


def run():
    print("implementation:", sys.implementation.name)
    names = sorted(k for k in globals() if k.startswith("test_"))
    failed = 0
    for name in names:
        try:
            globals()[name]()
            print("PASS", name)
        except Exception as e:
            failed += 1
            print("FAIL", name, repr(e))
    print("%d passed, %d failed" % (len(names) - failed, failed))
    if failed:
        raise AssertionError("%d test(s) failed" % failed)


run()
