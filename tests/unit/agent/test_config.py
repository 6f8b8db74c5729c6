"""Config validation: every problem reported with its path, and no port opened while checking."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.config import load_config, parse_config, render_docs, render_sample
from nengtan.cli import main
from nengtan.errors import ConfigError

CASES = Path(__file__).parents[2] / "cases" / "config"
ROOT = Path(__file__).parents[3]


def test_the_generated_sample_is_a_valid_config() -> None:
    config = parse_config(tomllib.loads(render_sample()), "sample")
    assert config.buses[0].meters[0].model.name == "chint-dtsu666"
    assert config.mqtt.port == 1883 and config.buses[0].baudrate == 9600


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()))
def test_config_cases_report_exactly_the_expected_problems(case: str) -> None:
    folder = CASES / case
    expected = (folder / "expected.err").read_text().splitlines()
    with pytest.raises(ConfigError) as caught:
        load_config(folder / "agent.toml")
    assert list(caught.value.problems) == expected


def test_a_config_with_three_mistakes_reports_all_three_and_opens_no_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation must not open anything")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr("serial.Serial.open", refuse)
    result = CliRunner().invoke(main, ["agent", "check-config", "-c",
                                       str(CASES / "three-mistakes" / "agent.toml")])
    assert result.exit_code == 2
    for path in ("inputs.modbus_rtu[0].baudrate", "inputs.modbus_rtu[0].meters[1].unit",
                 "outputs.mqtt.port"):
        assert f"At '{path}'" in result.output
    assert "3 problem(s)" in result.output


def test_a_missing_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config(tmp_path / "nope.toml")


def test_the_config_reference_in_docs_is_current() -> None:
    assert (ROOT / "docs" / "config-agent.md").read_text() == render_docs(), (
        "regenerate: nengtan provision config docs > docs/config-agent.md")


def test_a_meter_may_have_its_own_timeout_and_periods() -> None:
    data = tomllib.loads(render_sample())
    meter = data["inputs"]["modbus_rtu"][0]["meters"][0]
    meter.update({"timeout_ms": 800, "interval_s": 5, "counter_interval_s": 900, "ct_ratio": 50})
    [parsed] = parse_config(data, "sample").buses[0].meters
    assert (parsed.timeout_ms, parsed.interval_s, parsed.counter_interval_s, parsed.ct_ratio) == (
        800, 5.0, 900.0, 50.0)
