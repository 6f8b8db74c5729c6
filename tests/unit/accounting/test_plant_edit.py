"""The plant-model editing API on a copy of cloud_receiver/plant.sample: comments kept, whole
result validated (a refused edit leaves the files byte-identical), safe to re-run, dependants
named, every applied change logged."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from accounting_helpers import HOUR, MINUTE, Feeder, local_ms

import cloud_receiver
from cloud_receiver.accounting import plant_edit as pe
from cloud_receiver.accounting.energy import interval_energy
from cloud_receiver.accounting.model import load_plant
from cloud_receiver.store import Store
from nengtan.errors import ConfigError

SAMPLE = Path(cloud_receiver.__file__).parent / "plant.sample"
CST = timezone(timedelta(hours=8))
SWAP = datetime(2025, 6, 15, 10, 5, tzinfo=CST)


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SAMPLE, tmp_path / "plant"))


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file of the directory (temporary files included) with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if p.name != ".plant-edit.lock"}


def log_lines(directory: Path) -> list[dict[str, object]]:
    path = directory / pe.CHANGES_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_comments_and_layout_survive_an_edit(plant: Path) -> None:
    before = (plant / "plant.toml").read_text()
    pe.set_accounting(plant, {"year": 2024})
    after = (plant / "plant.toml").read_text()
    assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == \
        [line for line in after.splitlines() if line.lstrip().startswith("#")]
    # The inline comment of the changed key stays on its line, aligned as the operator had it.
    assert "year = 2024                   # data year of the grid factor" in after
    assert after == before.replace("year = 2023 ", "year = 2024 ")


def test_added_node_lands_with_the_other_nodes(plant: Path) -> None:
    result = pe.add_node(plant, "paint", kind="workshop", parent="zz-site", name="Paint shop")
    assert (result.status, result.before) == ("added", None)
    text = (plant / "plant.toml").read_text()
    assert ('parent = "zz-site"\n\n[[node]]\nid = "paint"\nkind = "workshop"\n'
            'name = "Paint shop"\nparent = "zz-site"\n\n[[point]]\nid = "main-incomer"') in text
    loaded = load_plant(plant)
    assert loaded.nodes["paint"].parent == "zz-site"
    assert [n.id for n in loaded.children("zz-site")] == ["stamping", "utilities", "office",
                                                         "paint"]


def test_invalid_edit_is_refused_and_files_stay_byte_identical(plant: Path) -> None:
    files = snapshot(plant)
    with pytest.raises(ConfigError) as bad_parent:
        pe.add_node(plant, "paint", kind="workshop", parent="nowhere")
    assert bad_parent.value.problems == ("At 'node[paint].parent': no node 'nowhere'",)
    assert "refused: add-node 'paint'" in bad_parent.value.source
    assert bad_parent.value.hint.startswith("Nothing was written.")
    with pytest.raises(ConfigError) as bad_level:
        pe.update_point(plant, "press-line", {"level": 7})
    # press-line is the second [[point]], so the loader names it point[1].
    assert bad_level.value.problems == ("At 'point[1].level': 7 is not a GB 17167 level "
                                        "(1, 2 or 3)",)
    with pytest.raises(ConfigError) as bad_type:
        pe.update_point(plant, "hvac", {"energy_type": "water", "scale": 1.0})
    assert bad_type.value.problems == ("At 'point[hvac].parent': the parent meters another "
                                       "energy type",)
    with pytest.raises(ConfigError) as bad_swap:
        pe.add_replacement(plant, "nope", at=SWAP, old_final=1.0, new_initial=0.0)
    assert bad_swap.value.source.endswith("replacements.toml (refused: add-replacement "
                                          "'nope@2025-06-15T10:05:00+08:00')")
    assert bad_swap.value.problems == ("At 'replacement[0].point': no metering point 'nope'",)
    assert snapshot(plant) == files  # no change, no temporary file, no log line


def test_adding_the_same_again_is_a_no_op(plant: Path) -> None:
    pe.add_node(plant, "paint", kind="workshop", parent="zz-site")
    text = (plant / "plant.toml").read_bytes()
    again = pe.add_node(plant, "paint", kind="workshop", parent="zz-site", name="paint")
    assert again.status == "unchanged" and not again.changed  # name defaults to the id
    # The sample's press-line omits measurement and scale; giving their defaults is the same.
    same = pe.add_point(plant, "press-line", node="press-line-1", gateway="demo-gw01",
                        meter="press-line", measurement="active_energy_import", level=2,
                        energy_type="electricity", use="production", parent="main-incomer",
                        scale=1.0)
    assert same.status == "unchanged"
    assert pe.update_point(plant, "press-line", {"use": "production"}).status == "unchanged"
    assert (plant / "plant.toml").read_bytes() == text
    assert [e["action"] for e in log_lines(plant)] == ["add-node"]


def test_an_other_node_under_an_existing_id_is_an_error_naming_it(plant: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        pe.add_node(plant, "stamping", kind="line", parent="stamping")
    (problem,) = exc.value.problems
    assert problem.startswith("At 'node[2].id': 'stamping' already exists with other values "
                              "(kind, name, parent)")


def test_removal_is_refused_while_something_depends_on_it(plant: Path) -> None:
    files = snapshot(plant)
    with pytest.raises(ConfigError) as node:
        pe.remove_node(plant, "zz-site")
    assert node.value.problems == (
        "At 'node[zz-site]': cannot remove it: child node(s) 'stamping', 'utilities', 'office';"
        " metering point(s) 'main-incomer' depend on it",)
    with pytest.raises(ConfigError) as point:
        pe.remove_point(plant, "main-incomer")
    assert "downstream point(s) 'press-line', 'compressor', 'hvac'" in point.value.problems[0]
    pe.add_replacement(plant, "press-line", at=SWAP, old_final=6384.4, new_initial=0.0)
    files = snapshot(plant)
    with pytest.raises(ConfigError) as swapped:
        pe.remove_point(plant, "press-line")
    assert "1 record(s) of the append-only replacements.toml" in swapped.value.problems[0]
    assert snapshot(plant) == files


def test_removing_a_point_keeps_its_history_but_says_it_is_no_longer_reported(
        plant: Path) -> None:
    result = pe.remove_point(plant, "hvac")
    assert result.status == "removed" and result.before is not None
    assert result.notes == ("readings of demo-gw01/hvac/active_energy_import stay in the store "
                            "but will no longer be reported: no metering point binds them",)
    assert pe.remove_node(plant, "office").status == "removed"  # now without dependants
    loaded = load_plant(plant)
    assert "hvac" not in loaded.points and "office" not in loaded.nodes
    assert pe.remove_point(plant, "hvac").status == "unchanged"  # re-run
    text = (plant / "plant.toml").read_text()
    assert 'id = "hvac"' not in text and text.endswith('parent = "main-incomer"\n')


def test_change_log_has_one_line_per_applied_change(plant: Path) -> None:
    pe.add_node(plant, "paint", kind="workshop", parent="zz-site")
    pe.add_node(plant, "paint", kind="workshop", parent="zz-site")  # unchanged: not logged
    pe.update_point(plant, "press-line", {"scale": 80})
    with pytest.raises(ConfigError):
        pe.update_point(plant, "press-line", {"scale": -1})  # refused: not logged
    first, second = log_lines(plant)
    assert first["action"] == "add-node" and first["id"] == "paint" and first["before"] is None
    assert first["after"] == {"id": "paint", "kind": "workshop", "parent": "zz-site"}
    assert second["action"] == "set-point" and second["file"] == "plant.toml"
    assert isinstance(second["before"], dict) and "scale" not in second["before"]
    assert isinstance(second["after"], dict) and second["after"]["scale"] == 80
    assert second["notes"] == ["the new scale applies to every stored reading of "
                               "'press-line', past periods included"]
    when = datetime.fromisoformat(str(second["time"]))
    assert str(second["time"]).endswith("Z") and when.tzinfo is not None
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60


def test_a_new_scale_changes_what_the_report_counts(plant: Path, store: Store) -> None:
    june1 = local_ms("2025-06-01T00:00")
    Feeder(store, gateway="demo-gw01").steady("press-line", june1, june1 + 24 * HOUR,
                                              15 * MINUTE, 0.0, 1.0)
    energy = interval_energy(store, load_plant(plant), june1, june1 + 24 * HOUR)
    assert energy.points["press-line"].total == pytest.approx(96.0)  # 96 quarter-hours x 1
    pe.update_point(plant, "press-line", {"scale": 80})
    loaded = load_plant(plant)
    assert loaded.points["press-line"].scale == 80.0
    energy = interval_energy(store, loaded, june1, june1 + 24 * HOUR)
    assert energy.points["press-line"].total == pytest.approx(7680.0)  # 96 x 80 kWh


def test_clearing_a_key_returns_it_to_its_default(plant: Path) -> None:
    pe.update_point(plant, "hvac", {"parent": None, "name": "HVAC"})
    point = load_plant(plant).points["hvac"]
    assert (point.parent, point.name) == (None, "HVAC")
    text = (plant / "plant.toml").read_text()
    assert text.endswith('use = "hvac"\nname = "HVAC"\n')
    # A new key goes under the table's last key, not below the blank line that ends it.
    pe.update_point(plant, "press-line", {"scale": 80})
    assert ('parent = "main-incomer"\nscale = 80\n\n[[point]]\nid = "compressor"'
            in (plant / "plant.toml").read_text())


def test_unknown_fields_and_unknown_ids_are_errors(plant: Path) -> None:
    with pytest.raises(ConfigError) as field:
        pe.update_node(plant, "office", {"id": "office2"})
    assert field.value.problems[0].startswith("At 'node[office].id': not a field the editor sets")
    with pytest.raises(ConfigError) as missing:
        pe.update_point(plant, "nope", {"scale": 2})
    assert missing.value.problems == ("At 'point[nope]': no point 'nope'",)


def test_replacements_are_an_append_only_log(plant: Path) -> None:
    (plant / "replacements.toml").unlink()
    added = pe.add_replacement(plant, "press-line", at=SWAP, old_final=6384.4, new_initial=0.0,
                               note="CT fault")
    assert added.status == "added"
    assert (plant / "replacements.toml").read_text().startswith("# Meter replacements")
    # The same instant written in UTC is the same record.
    same = pe.add_replacement(plant, "press-line", at=SWAP.astimezone(UTC), old_final=6384.4,
                              new_initial=0.0, note="CT fault")
    assert same.status == "unchanged"
    with pytest.raises(ConfigError) as other:
        pe.add_replacement(plant, "press-line", at=SWAP, old_final=6400.0, new_initial=0.0)
    assert "'press-line' already has a replacement at 2025-06-15T10:05:00+08:00" in \
        other.value.problems[0]
    (record,) = load_plant(plant).replacements
    # 2025-06-15T10:05+08:00 = 02:05Z; 20254 days after 1970-01-01:
    # (20254 * 86400 + 2 * 3600 + 5 * 60) * 1000 = 1_749_953_100_000
    assert (record.point, record.at_ms, record.old_final, record.note) == (
        "press-line", 1_749_953_100_000, 6384.4, "CT fault")
    assert not hasattr(pe, "remove_replacement")


def test_accounting_table_is_created_when_absent(tmp_path: Path, plant: Path) -> None:
    text = (plant / "plant.toml").read_text()
    start, end = text.index("# Which published"), text.index("[[node]]")
    (plant / "plant.toml").write_text(text[:start] + text[end:])
    assert load_plant(plant).accounting is None
    with pytest.raises(ConfigError) as partial:
        pe.set_accounting(plant, {"regime": "statistical"})
    assert "At 'accounting.region': missing" in partial.value.problems
    pe.set_accounting(plant, {"regime": "statistical", "region": "henan", "year": 2024})
    accounting = load_plant(plant).accounting
    assert accounting is not None and (accounting.region, accounting.year) == ("henan", 2024)
    assert (plant / "plant.toml").read_text().endswith(
        '\n\n[accounting]\nregime = "statistical"\nregion = "henan"\nyear = 2024\n')


def test_the_file_keeps_its_permissions(plant: Path) -> None:
    (plant / "plant.toml").chmod(0o640)
    pe.add_node(plant, "paint", kind="workshop", parent="zz-site")
    assert (plant / "plant.toml").stat().st_mode & 0o777 == 0o640


def test_removing_a_table_keeps_the_next_sections_header_comment(tmp_path: Path) -> None:
    plant = tmp_path / "p"
    plant.mkdir()
    (plant / "plant.toml").write_text(
        '[[node]]\nid = "e"\nkind = "enterprise"\n\n[[node]]\nid = "s"\nkind = "site"\n'
        'parent = "e"\n# s is the only site\n\n# ---- metering points ----\n\n'
        '[[point]]\nid = "p"\nnode = "e"\ngateway = "g"\nmeter = "m"\nlevel = 1\n'
        'energy_type = "electricity"\nuse = "production"\n')
    pe.remove_node(plant, "s")
    assert (plant / "plant.toml").read_text().startswith(
        '[[node]]\nid = "e"\nkind = "enterprise"\n\n# ---- metering points ----\n\n[[point]]')
    pe.add_node(plant, "s2", kind="site", parent="e")
    assert '\n\n[[node]]\nid = "s2"\nkind = "site"\nparent = "e"\n\n# ---- metering points' in \
        (plant / "plant.toml").read_text()
    # A new key goes under the last key, not under the next section's header comment.
    pe.update_node(plant, "s2", {"name": "Site 2"})
    assert 'parent = "e"\nname = "Site 2"\n\n# ---- metering points' in \
        (plant / "plant.toml").read_text()
