"""Config: defaults, every mistake reported with its path, the sample file stays valid."""

from __future__ import annotations

from pathlib import Path

import pytest

import cloud_receiver
from cloud_receiver.config import load_config, parse_config
from nengtan.errors import ConfigError

MINIMAL = {"storage": {"path": "receiver.db"}, "registry": {"dir": "gateways"}}
SAMPLE = Path(cloud_receiver.__file__).parent / "receiver.sample.toml"


def problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "test.toml")  # type: ignore[arg-type]
    return list(caught.value.problems)


def test_a_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = parse_config(MINIMAL, base_dir=tmp_path)
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.protocol) == ("localhost", 1883, "5")
    assert config.mqtt.topic_prefix == "nengtan/v1"
    assert (config.carbon.regime, config.carbon.region, config.carbon.year) == (
        "statistical", "henan", 2023)
    assert config.carbon.timezone == "Asia/Shanghai"
    assert config.storage_path == tmp_path / "receiver.db"  # relative to the config's folder


def test_three_mistakes_are_all_reported_with_their_paths() -> None:
    found = problems({"mqtt": {"port": "1883", "protocol": "4"},
                      "storage": {"path": "x.db"}, "registry": {}})
    assert len(found) == 3, found
    assert any(p.startswith("At 'mqtt.port': ") for p in found)
    assert any(p.startswith("At 'mqtt.protocol': ") for p in found)
    assert "At 'registry.dir': required key is missing" in found


def test_an_unknown_key_is_named_at_its_own_path() -> None:
    assert problems({**MINIMAL, "mqtt": {"hots": "broker"}}) == ["At 'mqtt.hots': unknown key"]


def test_an_unknown_factor_combination_lists_the_available_ones() -> None:
    [problem] = problems({**MINIMAL, "carbon": {"region": "henan", "year": 2020}})
    assert problem.startswith("At 'carbon': no grid CO2 factor for statistical/henan/2020")
    assert "statistical/henan/2023" in problem and "carbon_market/national/2022" in problem


def test_an_unknown_time_zone_is_a_config_error() -> None:
    assert problems({**MINIMAL, "carbon": {"timezone": "Asia/Shangai"}}) == [
        "At 'carbon.timezone': unknown time zone 'Asia/Shangai' (use an IANA name such as "
        "'Asia/Shanghai')"]


def test_the_sample_config_validates() -> None:
    config = load_config(SAMPLE)
    assert config.storage_path == Path("/var/lib/nengtan-receiver/receiver.db")
    assert config.carbon.region == "henan"


def test_a_file_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "r.toml"
    bad.write_text("[mqtt\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.source == str(bad)
