"""`nengtan agent status`: epoch, depth, oldest unsent age, size against the cap, pending gaps and
alarms, read-only beside the running agent."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import tomli_w
from buffer_helpers import FakeClock, Recorder, readings
from click.testing import CliRunner

from agent.buffer import SqliteBuffer
from agent.config import render_sample
from nengtan.cli import main


def _config(tmp_path: Path) -> Path:
    data = tomllib.loads(render_sample())
    data["gateway"].update(state_dir=str(tmp_path / "state"), buffer_max_mb=1)
    path = tmp_path / "agent.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def _store_with_a_gap_and_an_alarm(state: Path) -> SqliteBuffer:
    state.mkdir()
    (state / "buffer.db").write_bytes(b"garbage" * 1000)  # quarantined at start: an alarm
    buffer = SqliteBuffer(state / "buffer.db", gateway="gw", sealer=Recorder(), clock=FakeClock(),
                          max_bytes=256 * 1024)
    buffer._conn.execute("PRAGMA synchronous=OFF")  # only to keep the test fast
    i = 0
    while not buffer.stats().dropped_cycles:
        buffer.add(readings(20, i), taken_ms=1_000_000 + i, time_synced=True)
        i += 1
    return buffer


def test_status_json_shows_epoch_depth_size_gaps_and_alarms(tmp_path: Path) -> None:
    config = _config(tmp_path)
    buffer = _store_with_a_gap_and_an_alarm(tmp_path / "state")
    before = (tmp_path / "state" / "buffer.db").read_bytes()
    result = CliRunner().invoke(main, ["agent", "status", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    stats = doc["stats"]
    assert stats["epoch"] == 2 and doc["epoch_file"] == 2
    assert stats["unsent_cycles"] == buffer.stats().unsent_cycles > 0
    assert stats["max_bytes"] == 1024 * 1024 and stats["db_bytes"] > 0
    assert doc["oldest_unsent_age_s"] > 0 and doc["full_policy"] == "drop_oldest"
    assert [g["reason"] for g in doc["gaps"]] == ["disk_cap"] and doc["gaps"][0]["first"] == 1
    assert [a["kind"] for a in doc["alarms"]] == ["store_corrupt"] and doc["alarm_count"] == 1
    assert len(doc["quarantined"]) == 1
    assert (tmp_path / "state" / "buffer.db").read_bytes() == before  # read-only
    buffer.close()


def test_status_text_names_every_figure(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _store_with_a_gap_and_an_alarm(tmp_path / "state").close()
    result = CliRunner().invoke(main, ["agent", "status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    for label in ("epoch", "unsent", "oldest unsent", "size", "pending gaps", "alarms",
                  "store_corrupt", "disk_cap", "MiB cap"):
        assert label in result.output


def test_status_without_a_store_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["agent", "status", "--config", str(_config(tmp_path))])
    assert result.exit_code != 0 and "no buffer" in result.output
