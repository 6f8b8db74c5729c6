"""`nengtan agent scan` as a technician runs it: the real CLI, in a subprocess, on an emulated bus.

agent/cli.py does not register the command yet, so SCAN starts it through
``python -c "from agent.scan import scan_command; scan_command()"``. Once `agent.add_command(
scan_command)` is in, SCAN becomes ``[sys.executable, "-m", "nengtan", "agent", "scan"]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.meters import LineTiming, models
from agent.scan import PAUSE_S, probe_plan
from hw_tests.emulator import PtyBus, start_bus

SCAN = [sys.executable, "-m", "nengtan", "agent", "scan"]
REPO = Path(__file__).resolve().parents[1]
#: Scattered units, and two more models if their files exist: an Eastron that shares every probe
#: and check register with the SDM630 (told apart by what only one of them defines), and a Janitza.
METERS = [("chint-dtsu666", 3), ("eastron-sdm630", 17), ("chint-dtsu666", 42)] + [
    (name, unit) for name, unit in (("janitza-umg96rm", 29), ("eastron-sdm72dm-v2", 55)) if name in models()]
REFUSING_UNIT = 200  # answers every request with exception 04, outside the ranges the tests expect


def run_scan(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SCAN, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def scan_json(port: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    done = run_scan("--port", port, "--json", *args, timeout=timeout)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def bus() -> Iterator[PtyBus]:
    with start_bus([*METERS, ("eastron-sdm630", REFUSING_UNIT)], baudrate=9600) as line:
        line.set_faults(REFUSING_UNIT, exception_code=4)
        yield line


def test_scan_finds_every_meter_at_its_unit_names_its_model_and_nothing_else(bus: PtyBus) -> None:
    report = scan_json(bus.port, "--units", "1-60", "--timeout-ms", "50")
    found = {r["unit"]: r["model"] for r in report["found"]}
    assert found == dict((unit, name) for name, unit in METERS), report
    for result in report["found"]:
        assert result["status"] in ("identified", "preferred")
        assert 207 <= result["voltage"] <= 253 and 45 <= result["frequency"] <= 55
        assert all(check["ok"] for check in result["checks"] if check["kind"] != "extra")
    assert report["scanned"] == 60


def test_the_table_for_people_shows_unit_model_voltage_frequency_and_verdict(bus: PtyBus) -> None:
    done = run_scan("--port", bus.port, "--units", "3", "--timeout-ms", "50")
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["UNIT", "MODEL", "VOLTAGE", "FREQUENCY", "VERDICT"]
    assert row.split()[:2] == ["3", "chint-dtsu666"] and " V " in row and " Hz " in row
    assert "unit 3: chint-dtsu666" in done.stderr  # progress goes to stderr


def test_a_unit_that_answers_only_exceptions_is_reported_as_answering_model_unknown(bus: PtyBus) -> None:
    report = scan_json(bus.port, "--units", f"{REFUSING_UNIT}", "--timeout-ms", "50")
    [result] = report["found"]
    assert (result["unit"], result["model"]) == (REFUSING_UNIT, None)
    assert result["verdict"] == "answers, model unknown"


def test_an_empty_range_exits_0_with_a_wiring_hint(bus: PtyBus) -> None:
    done = run_scan("--port", bus.port, "--units", "100-102", "--timeout-ms", "50")
    assert done.returncode == 0, done.stderr
    assert "no meter answered" in done.stdout and "A/B" in done.stdout and "termination" in done.stdout


def test_a_port_that_cannot_be_opened_is_an_error_with_a_hint() -> None:
    done = run_scan("--port", "/dev/nengtan-no-such-adapter", "--units", "1")
    assert done.returncode == 1
    assert "error: cannot open /dev/nengtan-no-such-adapter: no such device" in done.stderr
    assert "hint:" in done.stderr and "Traceback" not in done.stderr


def test_a_full_scan_of_247_units_costs_about_one_timeout_per_silent_unit() -> None:
    timeout_s = 0.040
    with start_bus([("eastron-sdm630", 1), ("chint-dtsu666", 247)]) as edges:
        report = scan_json(edges.port, "--units", "1-247", "--timeout-ms", "40", timeout=120)
    assert {r["unit"]: r["model"] for r in report["found"]} == {1: "eastron-sdm630", 247: "chint-dtsu666"}
    # A silent unit costs the timeout plus the wire time of the presence probe (the narrowest
    # FC03 probe, request and reply frames at 9600 Bd) plus the pause between units.
    presence = min((plan[0] for plan in map(probe_plan, models().values())),
                   key=lambda b: (b.function != 3, b.count))
    silent_s = timeout_s + LineTiming(9600).transaction_s(presence.count) + PAUSE_S
    # Bound: 247 such units, +20 % for host scheduling, + 3 s for the two meters' two dozen reads.
    # (Probing every model per unit, as mbmd does, would cost ~10 timeouts per silent unit.)
    assert 247 * timeout_s < report["seconds"] < 247 * silent_s * 1.2 + 3.0, report["seconds"]
