"""Each plugin folder carries its schema, a sample and a README, and none has drifted."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from agent.config._render import render_section
from agent.config._schema import SCHEMA

AGENT = Path(__file__).parents[3] / "agent"
MOUNTED = {
    "inputs/modbus_rtu": ("inputs.modbus_rtu", SCHEMA["properties"]["inputs"]["properties"]["modbus_rtu"]),
    "inputs/modbus_tcp": ("inputs.modbus_tcp", SCHEMA["properties"]["inputs"]["properties"]["modbus_tcp"]),
    "outputs/mqtt": ("outputs.mqtt", SCHEMA["properties"]["outputs"]["properties"]["mqtt"]),
}
FOLDERS = sorted(str(p.relative_to(AGENT)) for kind in ("inputs", "outputs")
                 for p in (AGENT / kind).iterdir() if p.is_dir() and not p.name.startswith("_")
                 and p.name != "__pycache__")


def test_every_plugin_folder_is_mounted_in_the_config_schema() -> None:
    assert sorted(MOUNTED) == FOLDERS


@pytest.mark.parametrize("folder", FOLDERS)
def test_plugin_folder_has_schema_sample_and_readme(folder: str) -> None:
    for name in ("__init__.py", "schema.py", "sample.toml", "README.md"):
        assert (AGENT / folder / name).is_file(), f"{folder} lacks {name}"
    module = importlib.import_module(f"agent.{folder.replace('/', '.')}.schema")
    assert module.SCHEMA["description"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_sample_and_readme_match_the_schema(folder: str) -> None:
    path, schema = MOUNTED[folder]
    sample = (AGENT / folder / "sample.toml").read_text()
    assert sample == render_section(path, schema), f"regenerate {folder}/sample.toml"
    assert f"```toml\n{sample}```" in (AGENT / folder / "README.md").read_text()
