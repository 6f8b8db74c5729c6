"""Runs micro/test_modbus_rtu.py on the real MicroPython interpreter (WebAssembly, via node).

CPython accepts plenty that MicroPython rejects (and vice versa), so passing
test_modbus_rtu_cpython.py says little about the device; this does.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "micro"
PACKAGE = "@micropython/micropython-webassembly-pyscript"


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        msg = "node not found: install Debian packages `nodejs` and `npm` (needed for MicroPython tests)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)  # CI must not go green by silently skipping the device tests
        pytest.skip(msg)
    return node


def _ensure_package() -> None:
    if (HERE / "node_modules" / PACKAGE / "micropython.mjs").exists():
        return
    r = subprocess.run(
        ["sh", str(ROOT / "scripts" / "ensure-micropython.sh")],
        capture_output=True, text=True, timeout=240,
    )
    assert r.returncode == 0, f"ensure-micropython.sh failed:\n{r.stdout}\n{r.stderr}"


def test_micro_suite_on_micropython() -> None:
    node = _require_node()
    _ensure_package()
    r = subprocess.run(
        [node, str(HERE / "run_micropython.mjs")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # Proof the tests ran inside MicroPython, not a CPython fallback.
    assert "implementation: micropython" in r.stdout, out
    m = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert m is not None, out
    passed, failed = int(m[1]), int(m[2])
    assert failed == 0 and passed > 0, out
    assert "FAIL" not in r.stdout, out
