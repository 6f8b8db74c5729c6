"""``nengtan receiver plant …`` on a copy of cloud_receiver/plant.sample, through click's runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cloud_receiver
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.accounting.plant_cli import plant as plant_group
from cloud_receiver.cli import receiver

SAMPLE = Path(cloud_receiver.__file__).parent / "plant.sample"


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE, tmp_path / "plant"))


def run(plant: Path, *args: str) -> Result:
    return CliRunner().invoke(receiver, ["plant", args[0], "--plant", str(plant), *args[1:]])


@pytest.mark.parametrize("name", sorted(plant_group.commands))
def test_every_plant_command_has_an_example(name: str) -> None:
    result = CliRunner().invoke(receiver, ["plant", name, "-h"])
    assert result.exit_code == 0 and "Example:" in result.output
    assert "--plant" in result.output and "--json" in result.output


def test_show_prints_the_tree_with_points(plant: Path) -> None:
    result = run(plant, "show")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1:4] == [
        "demo-co [enterprise] Demo Co.",
        "    zz-site [site] Zhengzhou site",
        "        * main-incomer: demo-gw01/main-incomer/active_energy_import, level 1, "
        "electricity (kWh), production"]
    assert "            press-line-1 [line] Press line 1" in lines


def test_show_json_nests_children_and_points(plant: Path) -> None:
    result = run(plant, "show", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    tree = data["tree"]
    assert tree["id"] == "demo-co" and tree["points"] == []
    (site,) = tree["children"]
    assert [c["id"] for c in site["children"]] == ["stamping", "utilities", "office"]
    assert [(p["id"], p["unit"]) for p in site["points"]] == [("main-incomer", "kWh")]
    assert data["accounting"]["year"] == 2023 and data["replacements"] == []


def test_add_node_then_again_is_unchanged(plant: Path) -> None:
    first = run(plant, "add-node", "paint", "--kind", "workshop", "--parent", "zz-site")
    assert first.exit_code == 0, first.output
    assert first.output.startswith("added node 'paint' (plant.toml; logged in changes.log)")
    again = run(plant, "add-node", "paint", "--kind", "workshop", "--parent", "zz-site",
                "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["status"] == "unchanged"
    assert load_plant(plant).nodes["paint"].kind == "workshop"


def test_an_invalid_edit_exits_2_with_the_path_and_writes_nothing(plant: Path) -> None:
    before = (plant / "plant.toml").read_bytes()
    result = run(plant, "add-node", "paint", "--kind", "workshop", "--parent", "nowhere")
    assert result.exit_code == 2
    assert "At 'node[paint].parent': no node 'nowhere'" in result.stderr
    assert "hint: Nothing was written." in result.stderr
    assert (plant / "plant.toml").read_bytes() == before
    assert not (plant / "changes.log").exists()


def test_remove_node_with_dependants_is_refused_naming_them(plant: Path) -> None:
    result = run(plant, "remove-node", "stamping")
    assert result.exit_code == 2
    assert "cannot remove it: child node(s) 'press-line-1' depend on it" in result.stderr
    assert "hint: Move or remove the dependants first" in result.stderr


def test_set_point_scale_is_reported_and_loaded(plant: Path) -> None:
    result = run(plant, "set-point", "press-line", "--scale", "80", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["status"], data["after"]["scale"]) == ("updated", 80.0)
    assert data["notes"] == ["the new scale applies to every stored reading of 'press-line', "
                             "past periods included"]
    assert load_plant(plant).points["press-line"].scale == 80.0
    cleared = run(plant, "set-point", "press-line", "--clear", "scale")
    assert cleared.exit_code == 0 and "    scale: 80.0 -> (none)" in cleared.output
    assert load_plant(plant).points["press-line"].scale == 1.0


def test_set_without_a_change_is_a_usage_error(plant: Path) -> None:
    result = run(plant, "set-node", "office")
    assert result.exit_code == 2 and "nothing to change" in result.output


def test_remove_point_says_history_is_no_longer_reported(plant: Path) -> None:
    result = run(plant, "remove-point", "hvac")
    assert result.exit_code == 0, result.output
    assert "note: readings of demo-gw01/hvac/active_energy_import stay in the store" in \
        result.output


def test_add_replacement_needs_an_offset_and_is_idempotent(plant: Path) -> None:
    naive = run(plant, "add-replacement", "press-line", "--at", "2025-06-15T10:05:00",
                "--old-final", "6384.4", "--new-initial", "0")
    assert naive.exit_code == 2 and "give a UTC offset" in naive.output
    args = ("add-replacement", "press-line", "--at", "2025-06-15T10:05:00+08:00",
            "--old-final", "6384.4", "--new-initial", "0", "--note", "CT fault")
    assert run(plant, *args).exit_code == 0
    again = run(plant, *args)
    assert again.exit_code == 0 and again.output.startswith("unchanged: replacement")
    other = run(plant, *args[:5], "6400", *args[6:])
    assert other.exit_code == 2 and "the log is append-only" in other.stderr
    assert len(load_plant(plant).replacements) == 1


def test_log_lists_applied_changes(plant: Path) -> None:
    run(plant, "add-node", "paint", "--kind", "workshop", "--parent", "zz-site")
    run(plant, "set-point", "press-line", "--scale", "80")
    run(plant, "set-point", "press-line", "--scale", "80")  # unchanged: not logged
    data = json.loads(run(plant, "log", "--json").output)
    assert [(e["action"], e["id"]) for e in data["entries"]] == [("add-node", "paint"),
                                                                  ("set-point", "press-line")]
    assert data["unreadable_lines"] == []
    text = run(plant, "log", "--id", "press-line").output
    assert "set-point        press-line\n    scale: (none) -> 80.0\n" in text
    assert "paint" not in text


def test_log_skips_a_torn_line_and_warns(plant: Path) -> None:
    run(plant, "add-node", "paint", "--kind", "workshop", "--parent", "zz-site")
    with (plant / "changes.log").open("a") as handle:
        handle.write('{"time": "2025-')
    result = run(plant, "log")
    assert result.exit_code == 0 and "add-node" in result.stdout
    assert "unreadable line(s) 2 of changes.log skipped" in result.stderr


def test_set_accounting_changes_the_factors_reports_use_and_warns_when_none_is_published(
        plant: Path) -> None:
    result = run(plant, "set-accounting", "--region", "shanghai")
    assert result.exit_code == 0, result.output
    assert 'region: "henan" -> "shanghai"' in result.output
    # The sample's regime and year stay: statistical/shanghai/2023 is not in grid_co2.toml.
    assert "no grid CO2 factor for statistical/shanghai/2023" in result.output
    assert load_plant(plant).accounting is not None
    assert load_plant(plant).accounting.region == "shanghai"  # type: ignore[union-attr]
    back = run(plant, "set-accounting", "--region", "henan", "--json")
    assert json.loads(back.output)["notes"] == []  # statistical/henan/2023 is published
    again = run(plant, "set-accounting", "--region", "henan", "--json")
    assert json.loads(again.output)["status"] == "unchanged"
    refused = run(plant, "set-accounting", "--regime", "market")
    assert refused.exit_code == 2 and "market" in refused.output  # not one of the regimes
