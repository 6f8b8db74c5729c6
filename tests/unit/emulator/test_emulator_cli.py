"""``python -m hw_tests.emulator`` as a separate process, the way the demo and hw tests run it."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.meters import decode_registers

ROOT = Path(__file__).resolve().parents[3]


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hw_tests.emulator", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ready_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    assert readable, "emulator did not print READY in time"
    return proc.stdout.readline().strip()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    link, truth = tmp_path / "ttyNengtan", tmp_path / "truth.json"
    proc = spawn("--link", str(link), "--baud", "9600", "--parity", "N",
                 "--meter", "chint-dtsu666:1", "--meter", "eastron-sdm630:2",
                 "--speedup", "600", "--truth", str(truth), "--seed", "3")
    try:
        yield proc, link, truth
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)


def test_serves_on_the_link_and_keeps_the_truth_file_current_until_sigterm(
        emulator: tuple[subprocess.Popen[str], Path, Path],
        make_client: Callable[..., Any]) -> None:
    proc, link, truth = emulator
    line = ready_line(proc)
    assert line.startswith("READY /dev/") and os.readlink(link) == line.split()[1]
    client = make_client(str(link))
    decoded = []
    for _ in range(2):
        response = client.read_input_registers(0x0048, count=2, device_id=2)
        decoded.append(decode_registers(response.registers, "float32"))
        time.sleep(0.3)
    deadline = time.monotonic() + 3
    while json.loads(truth.read_text())["units"]["2"]["count"] < 2:
        assert time.monotonic() < deadline, "truth file not updated"
        time.sleep(0.05)
    sdm = json.loads(truth.read_text())["units"]["2"]
    assert (sdm["model"], sdm["first"], sdm["last"]) == ("eastron-sdm630", *decoded)
    assert decoded[1] > decoded[0]
    client.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    final = json.loads(truth.read_text())
    assert final["units"]["1"] == {"model": "chint-dtsu666", "first": None, "last": None,
                                   "count": 0, "requests": 0}
    assert final["units"]["2"]["count"] == 2
    assert not link.is_symlink()


def test_sigint_also_exits_cleanly(emulator: tuple[subprocess.Popen[str], Path, Path]) -> None:
    proc, _, truth = emulator
    ready_line(proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0 and truth.exists()


@pytest.mark.parametrize("meter", ["nosuchmeter:1", "eastron-sdm630", "eastron-sdm630:0"])
def test_bad_meter_arguments_exit_with_usage_error(meter: str) -> None:
    proc = spawn("--meter", meter)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and ("MODEL:UNIT" in err or "unknown model" in err)


def test_two_meters_on_one_unit_is_a_usage_error() -> None:
    proc = spawn("--meter", "eastron-sdm630:1", "--meter", "chint-dtsu666:1")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and "own unit id" in err


def test_a_link_path_that_is_a_regular_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ttyNengtan"
    path.write_text("keep me")
    proc = spawn("--link", str(path), "--meter", "eastron-sdm630:1")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1 and "not a symlink" in err and path.read_text() == "keep me"
