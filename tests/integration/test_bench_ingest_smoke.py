"""``bench/ingest.py --quick`` runs end to end and prints every figure it promises: in-process
readings/s for SQLite and PostgreSQL, and over MQTT for one and two real receiver processes,
with their peak RSS, the 2-vs-1 ratio and a verdict per target.

Only that the figures are there and plausible is checked, not the targets: a smoke run on a
machine shared with other test suites says nothing about throughput."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.helpers import mosquitto_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("NENGTAN_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
NUMBER = r"(\d[\d,]*)"


def _postgresql_reachable() -> None:
    try:
        psycopg.connect(PG_URL, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI ({PG_URL}): {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")


def _rate(text: str) -> int:
    return int(text.replace(",", ""))


def test_quick_run_prints_throughput_for_both_backends_and_both_process_counts() -> None:
    binary = mosquitto_binary()
    _postgresql_reachable()
    env = {**os.environ, "PATH": os.environ["PATH"] + os.pathsep + os.path.dirname(binary),
           "NENGTAN_PG_URL": PG_URL}
    done = subprocess.run([sys.executable, "bench/ingest.py", "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    out = done.stdout
    # 1 means a target was missed, which a smoke run on a shared machine may; 2+ is a crash.
    assert done.returncode in (0, 1), done.stdout + done.stderr

    for backend in ("sqlite", "postgresql"):
        row = re.search(rf"^{backend}\s+{NUMBER}\s+([\d.]+)\s+([\d.]+)\s", out, re.M)
        assert row, f"no in-process row for {backend}:\n{out}"
        assert _rate(row.group(1)) > 1_000
        assert 20 < float(row.group(3)) < 2_000  # stored bytes per reading
    for processes in (1, 2):
        row = re.search(rf"^\s+{processes}\s+{NUMBER}\s+{NUMBER}\s+([\d.]+)\s+([\d/]+)\s", out, re.M)
        assert row, f"no MQTT row for {processes} process(es):\n{out}"
        total, per_process = _rate(row.group(1)), _rate(row.group(2))
        assert total > 1_000
        assert abs(per_process * processes - total) <= processes
        rss = [float(x) for x in row.group(4).split("/")]
        assert len(rss) == processes and all(20 < mb < 1_000 for mb in rss)
    assert re.search(r"^2 processes / 1 = [\d.]+ x  \(\d+ CPUs shared", out, re.M), out
    verdicts = re.findall(r"^(MET   |MISSED) (.+)$", out, re.M)
    assert len(verdicts) == 3, out
    assert (done.returncode == 0) == all(v == "MET   " for v, _ in verdicts)
