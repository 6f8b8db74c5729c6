"""Real meters on a real RS-485 adapter, read the way ``nengtan agent read`` reads them.

Runs only when NENGTAN_HW_PORT names the adapter's serial device, with the meters' unit ids in
NENGTAN_HW_UNITS and their models in NENGTAN_HW_MODELS (comma-separated, same order); the line
settings default to 9600 8N1 and can be set with NENGTAN_HW_BAUD, NENGTAN_HW_PARITY,
NENGTAN_HW_STOPBITS and NENGTAN_HW_TIMEOUT_MS. Example::

    NENGTAN_HW_PORT=/dev/ttyUSB0 NENGTAN_HW_UNITS=1,2 \\
    NENGTAN_HW_MODELS=chint-dtsu666,eastron-sdm630 .venv/bin/pytest hw_tests/test_real_bus.py -s

Without NENGTAN_HW_PORT the very same test runs against the emulated bus started as a separate
process on a pty (so CI runs it too, and nothing is skipped). With NENGTAN_HW_PORT set to
anything that is not a serial device, or with units and models that do not pair up, it fails: a
typo must not pass for a green run.
"""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

pytestmark = pytest.mark.hw

PORT_ENV = "NENGTAN_HW_PORT"
READS = 3  # the agent learns from a first read (exception 02 → read without bridging holes)
READ_GAP_S = 1.5


@dataclass(frozen=True)
class Line:
    port: str
    baudrate: int
    parity: str
    stopbits: int
    timeout_ms: int
    meters: list[tuple[str, str, int]]  # (meter id, model, unit)


EMULATED = [("chint-dtsu666", 1), ("eastron-sdm630", 2), ("acrel-adl400", 7), ("abb-b23", 12)]


@pytest.fixture
def line() -> Iterator[Line]:
    """The real adapter named by NENGTAN_HW_PORT, or else the emulated bus in its own process."""
    if os.environ.get(PORT_ENV, "").strip():
        yield line_from_env()
        return
    args = [sys.executable, "-m", "hw_tests.emulator"]
    for model, unit in EMULATED:
        args += ["--meter", f"{model}:{unit}"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().decode().split()
        assert ready[:1] == ["READY"], f"emulator did not start: {ready}"
        yield Line(ready[1], 9600, "N", 1, 1000,
                   [(f"unit{u}-{model}", model, u) for model, u in EMULATED])
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def line_from_env() -> Line:
    port = os.environ.get(PORT_ENV, "").strip()
    try:
        mode = os.stat(port).st_mode
    except OSError as exc:
        pytest.fail(f"{PORT_ENV}={port}: {exc}")
    if not stat.S_ISCHR(mode):
        pytest.fail(f"{PORT_ENV}={port} is not a character (serial) device")
    units = [u.strip() for u in os.environ.get("NENGTAN_HW_UNITS", "").split(",") if u.strip()]
    names = [m.strip() for m in os.environ.get("NENGTAN_HW_MODELS", "").split(",") if m.strip()]
    if not units or len(units) != len(names):
        pytest.fail(f"NENGTAN_HW_UNITS ({units}) and NENGTAN_HW_MODELS ({names}) must name the "
                    "same number of meters, at least one")
    if not all(u.isdigit() and 1 <= int(u) <= 247 for u in units):
        pytest.fail(f"NENGTAN_HW_UNITS: unit ids are 1..247, got {units}")
    return Line(port, int(os.environ.get("NENGTAN_HW_BAUD", "9600")),
                os.environ.get("NENGTAN_HW_PARITY", "N"),
                int(os.environ.get("NENGTAN_HW_STOPBITS", "1")),
                int(os.environ.get("NENGTAN_HW_TIMEOUT_MS", "1000")),
                [(f"unit{u}-{name}", name, int(u)) for u, name in zip(units, names)])


def implausible(model: Any, values: dict[str, float]) -> list[str]:
    """Physical sanity of one meter's good readings. Lenient where real wiring varies (an unused
    phase reads 0 V / 0 A; power can flow either way), strict where it cannot."""
    wrong = []
    probe = model.probe
    if probe.measurement not in values:
        wrong.append(f"probe {probe.measurement} not read")
    elif not probe.low <= values[probe.measurement] <= probe.high:
        wrong.append(f"probe {probe.measurement}={values[probe.measurement]} outside "
                     f"{probe.low}..{probe.high} (the model's own healthy range)")
    for name, value in values.items():
        if not math.isfinite(value):
            wrong.append(f"{name}={value}")
        elif name.startswith("voltage_") and not 0 <= value <= (520 if name.count("_l") == 2
                                                                  else 300):
            wrong.append(f"{name}={value} V")
        elif name.startswith("frequency") and not (45 <= value <= 65):
            wrong.append(f"{name}={value} Hz")
        elif name.startswith("power_factor") and not -1.001 <= value <= 1.001:
            wrong.append(f"{name}={value}")
        elif "_energy_" in name and value < 0:
            wrong.append(f"{name}={value} (a counter below zero)")
    return wrong


def test_every_real_meter_answers_plausibly_and_its_counters_never_run_backwards(line: Line) -> None:
    # Imported here: without hardware this module must collect whatever the agent's API is.
    from agent.config import parse_config
    from agent.runner import make_poller

    config = parse_config({
        "gateway": {"id": "hw-test", "key_file": "/nonexistent/gateway.key",
                    "state_dir": "/nonexistent/state"},
        "inputs": {"modbus_rtu": [{
            "port": line.port, "baudrate": line.baudrate, "parity": line.parity,
            "stopbits": line.stopbits, "timeout_ms": line.timeout_ms,
            "meters": [{"id": m, "model": model, "unit": u} for m, model, u in line.meters]}]},
        "outputs": {"mqtt": {"host": "127.0.0.1"}},
    }, f"{PORT_ENV}={line.port}")
    bus = config.buses[0]
    poller = make_poller(bus)  # what `nengtan agent read` does, once per meter and read
    problems: dict[str, list[str]] = {}
    report = []
    try:
        assert poller.open(), f"cannot open {line.port}"
        for meter in bus.meters:
            reads = []
            for k in range(READS):
                if k:
                    time.sleep(READ_GAP_S)
                reads.append(poller.read(meter.id).readings)
            last = reads[-1]
            found = []
            bad = sorted(r.measurement for r in last if r.quality == "bad")
            if bad:
                found.append(f"bad on read {READS}: {bad}; error: "
                             f"{poller.stats()[meter.id].last_error}")
            values = {r.measurement: float(r.value) for r in last
                      if r.quality != "bad" and r.value is not None}
            found += implausible(meter.model, values)
            firsts = {r.measurement: r.value for r in reads[0] if r.value is not None}
            found += [f"{name} ran backwards: {firsts[name]} -> {value}"
                      for name, value in values.items()
                      if "_energy_" in name and name in firsts and value < firsts[name]]
            found += [f"{r.measurement} is suspect" for read in reads for r in read
                      if r.quality == "suspect"]
            if found:
                problems[meter.id] = found
            probe = meter.model.probe.measurement
            report.append(f"{meter.id}: {len(values)}/{len(last)} good, "
                          f"{probe}={values.get(probe)}")
    finally:
        poller.close()
    print("\n".join(report))
    assert not problems, problems
