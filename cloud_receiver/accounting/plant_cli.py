"""``nengtan receiver plant …``: look at and edit the plant model. Thin over ``plant_edit``:
every edit is validated as a whole before the file is replaced, keeps the operator's comments,
is safe to re-run and is appended to the plant's changes.log."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cloud_receiver.accounting.factors import BASES, REGIMES
from cloud_receiver.accounting._changelog import CHANGES_FILE, read_changes
from cloud_receiver.accounting.model import (
    ENERGY_TYPES,
    NODE_KINDS,
    USE_CATEGORIES,
    Plant,
    load_plant,
)
from nengtan.clikit import CONTEXT_SETTINGS, emit_json, handle_errors

# The commands import plant_edit when they run, so tomlkit does not load with every `nengtan`
# command.
if TYPE_CHECKING:
    from cloud_receiver.accounting.plant_edit import EditResult

_PLANT = click.option("--plant", "plant_dir", required=True,
                      type=click.Path(file_okay=False, exists=True, path_type=Path),
                      help="The plant data directory (plant.toml, replacements.toml, ...).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_KIND = click.Choice(NODE_KINDS)
_ETYPE = click.Choice(list(ENERGY_TYPES))
_USE = click.Choice(sorted(USE_CATEGORIES))
_LEVEL = click.IntRange(1, 3)
F = TypeVar("F", bound=Callable[..., Any])


def _point_options(required: bool) -> Callable[[F], F]:
    """The metering point's fields, required for add-point and optional for set-point."""
    options = [
        click.option("--node", required=required, help="The node this point measures."),
        click.option("--gateway", required=required, help="Gateway id the meter is read by."),
        click.option("--meter", required=required, help="Meter id on that gateway."),
        click.option("--level", type=_LEVEL, required=required, help="GB 17167 level: 1, 2 or 3."),
        click.option("--energy-type", type=_ETYPE, required=required, help="What it meters."),
        click.option("--use", type=_USE, required=required, help="Use category (分项)."),
        click.option("--measurement", default=None,
                     help="Rolled-up counter (default active_energy_import)."),
        click.option("--parent", default=None, help="Upstream metering point (balance checks)."),
        click.option("--scale", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Energy units per counter unit, e.g. CT×PT ratio."),
        click.option("--rollover-at", type=float, default=None,
                     help="The register's modulus, if it wraps to 0."),
        click.option("--name", default=None, help="Display name (default: the id)."),
    ]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _echo_result(result: EditResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
        return
    what = result.action.split("-", 1)[1]
    if result.status == "unchanged":
        click.echo(f"unchanged: {what} {result.target!r} is already as given ({result.file})")
    else:
        click.echo(f"{result.status} {what} {result.target!r} ({result.file}; logged in "
                   f"{CHANGES_FILE})")
        for key, old, new in _diff(result.before, result.after):
            click.echo(f"    {key}: {old} -> {new}")
    for note in result.notes:
        click.echo(f"note: {note}")


def _diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[tuple[str, ...]]:
    old, new = before or {}, after or {}
    return [(k, json.dumps(old[k], ensure_ascii=False) if k in old else "(none)",
             json.dumps(new[k], ensure_ascii=False) if k in new else "(none)")
            for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k) or k not in old
            or k not in new]


@click.group(name="plant", context_settings=CONTEXT_SETTINGS)
def plant() -> None:
    """Show and edit the plant model (nodes, metering points, meter replacements).

    Each edit is checked with the same rules as loading the plant; an edit that would make it
    invalid is refused and nothing is written. Comments in the files are kept.

    \b
    Example:
        nengtan receiver plant show --plant plant/
        nengtan receiver plant add-node paint --plant plant/ --kind workshop --parent zz-site
        nengtan receiver plant log --plant plant/
    """


@plant.command(name="show")
@_PLANT
@_JSON
@handle_errors
def show_command(plant_dir: Path, as_json: bool) -> None:
    """The node tree with the metering points on each node.

    \b
    Example:
        nengtan receiver plant show --plant plant/
        nengtan receiver plant show --plant plant/ --json | jq '.tree'
    """
    model = load_plant(plant_dir)
    if as_json:
        emit_json({"name": model.name, "timezone": model.timezone,
                   "accounting": asdict(model.accounting) if model.accounting else None,
                   "tree": _tree(model, model.enterprise.id),
                   "replacements": [asdict(r) for r in model.replacements]})
        return
    acc = model.accounting
    click.echo(f"{model.name or plant_dir}  (time zone {model.timezone}"
               + (f"; {acc.regime}, {acc.region} {acc.year}, {acc.electricity_basis})" if acc
                  else ")"))
    _echo_tree(model, model.enterprise.id, "")


def _tree(model: Plant, node_id: str) -> dict[str, Any]:
    node = model.nodes[node_id]
    return {**asdict(node),
            "points": [{**asdict(p), "unit": p.unit} for p in model.points.values()
                       if p.node == node_id],
            "children": [_tree(model, c.id) for c in model.children(node_id)]}


def _echo_tree(model: Plant, node_id: str, indent: str) -> None:
    node = model.nodes[node_id]
    click.echo(f"{indent}{node.id} [{node.kind}] {node.name}")
    for p in (p for p in model.points.values() if p.node == node_id):
        extras = [f"scale {p.scale:g}"] if p.scale != 1.0 else []
        extras += [f"under {p.parent}"] if p.parent else []
        swaps = len(model.replacements_of(p.id))
        extras += [f"{swaps} replacement(s)"] if swaps else []
        click.echo(f"{indent}    * {p.id}: {p.gateway}/{p.meter}/{p.measurement}, level "
                   f"{p.level}, {p.energy_type} ({p.unit}), {p.use}"
                   + (f"; {', '.join(extras)}" if extras else ""))
    for child in model.children(node_id):
        _echo_tree(model, child.id, indent + "    ")


@plant.command(name="add-node")
@_PLANT
@_JSON
@click.argument("node_id")
@click.option("--kind", type=_KIND, required=True, help="Hierarchy level of the node.")
@click.option("--parent", default=None, help="The node above it (all but the enterprise).")
@click.option("--name", default=None, help="Display name (default: the id).")
@handle_errors
def add_node_command(plant_dir: Path, as_json: bool, node_id: str, kind: str,
                     parent: str | None, name: str | None) -> None:
    """Add a node. Running it again with the same values changes nothing.

    \b
    Example:
        nengtan receiver plant add-node paint --plant plant/ --kind workshop --parent zz-site \\
            --name "Paint shop"
    """
    from cloud_receiver.accounting import plant_edit as pe

    _echo_result(pe.add_node(plant_dir, node_id, kind=kind, parent=parent, name=name), as_json)


@plant.command(name="set-node")
@_PLANT
@_JSON
@click.argument("node_id")
@click.option("--kind", type=_KIND, default=None, help="New hierarchy level.")
@click.option("--parent", default=None, help="Move it under this node.")
@click.option("--name", default=None, help="New display name.")
@handle_errors
def set_node_command(plant_dir: Path, as_json: bool, node_id: str, kind: str | None,
                     parent: str | None, name: str | None) -> None:
    """Change a node's kind, parent or name (its id stays).

    \b
    Example:
        nengtan receiver plant set-node office --plant plant/ --name "Office and canteen"
    """
    changes = {k: v for k, v in (("kind", kind), ("parent", parent), ("name", name)) if v}
    if not changes:
        raise click.UsageError("nothing to change: give --kind, --parent or --name")
    from cloud_receiver.accounting import plant_edit as pe

    _echo_result(pe.update_node(plant_dir, node_id, changes), as_json)


@plant.command(name="remove-node")
@_PLANT
@_JSON
@click.argument("node_id")
@handle_errors
def remove_node_command(plant_dir: Path, as_json: bool, node_id: str) -> None:
    """Remove a node that has no child nodes and no metering points.

    \b
    Example:
        nengtan receiver plant remove-node paint --plant plant/
    """
    from cloud_receiver.accounting import plant_edit as pe

    _echo_result(pe.remove_node(plant_dir, node_id), as_json)


@plant.command(name="add-point")
@_PLANT
@_JSON
@click.argument("point_id")
@_point_options(required=True)
@handle_errors
def add_point_command(plant_dir: Path, as_json: bool, point_id: str, **fields: Any) -> None:
    """Add a metering point: bind one stored counter series (gateway/meter/measurement) to a
    node. Running it again with the same values changes nothing.

    \b
    Example:
        nengtan receiver plant add-point paint-main --plant plant/ --node paint \\
            --gateway demo-gw01 --meter paint --level 2 --energy-type electricity \\
            --use production --parent main-incomer --scale 80
    """
    from cloud_receiver.accounting import plant_edit as pe

    _echo_result(pe.add_point(plant_dir, point_id, **fields), as_json)


@plant.command(name="set-point")
@_PLANT
@_JSON
@click.argument("point_id")
@_point_options(required=False)
@click.option("--clear", "cleared", multiple=True,
              type=click.Choice(["name", "measurement", "parent", "scale", "rollover_at"]),
              help="Remove this key (back to its default); repeatable.")
@handle_errors
def set_point_command(plant_dir: Path, as_json: bool, point_id: str,
                      cleared: tuple[str, ...], **fields: Any) -> None:
    """Change fields of a metering point (its id stays). A new scale applies to all of the
    point's stored readings; a meter swapped at a known time is an add-replacement instead.

    \b
    Example:
        nengtan receiver plant set-point press-line --plant plant/ --scale 80
        nengtan receiver plant set-point hvac --plant plant/ --clear parent
    """
    changes: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    changes.update({k: None for k in cleared})
    if not changes:
        raise click.UsageError("nothing to change: give a field option or --clear")
    from cloud_receiver.accounting import plant_edit as pe

    _echo_result(pe.update_point(plant_dir, point_id, changes), as_json)


@plant.command(name="remove-point")
@_PLANT
@_JSON
@click.argument("point_id")
@handle_errors
def remove_point_command(plant_dir: Path, as_json: bool, point_id: str) -> None:
    """Remove a metering point no other point is downstream of and no replacement names.
    Its stored readings stay in the store but are no longer reported.

    \b
    Example:
        nengtan receiver plant remove-point hvac --plant plant/
    """
    from cloud_receiver.accounting import plant_edit as pe

    _echo_result(pe.remove_point(plant_dir, point_id), as_json)


def _aware(_ctx: click.Context, _param: click.Parameter, value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date-time") from exc
    if at.tzinfo is None:
        raise click.BadParameter("give a UTC offset (e.g. 2025-06-15T10:05:00+08:00): a local "
                                 "time without one is ambiguous")
    return at


@plant.command(name="set-accounting")
@_PLANT
@_JSON
@click.option("--regime", type=click.Choice(REGIMES), default=None,
              help="Which grid CO2 factors reports use (never mixed in one report).")
@click.option("--region", default=None, help="Grid region of the factor, e.g. henan.")
@click.option("--year", type=int, default=None, help="Data year of the grid factor and 等价值.")
@click.option("--electricity-basis", type=click.Choice(BASES), default=None,
              help="Electricity to standard coal: 当量值 (calorific) or 等价值 (primary).")
@handle_errors
def set_accounting_command(plant_dir: Path, as_json: bool, regime: str | None,
                           region: str | None, year: int | None,
                           electricity_basis: str | None) -> None:
    """Set the factors reports use unless their command line says otherwise ([accounting] of
    plant.toml). Warns when no grid factor is published for the regime, region and year.

    \b
    Example:
        nengtan receiver plant set-accounting --plant plant/ --regime statistical \\
            --region henan --year 2023
    """
    changes = {k: v for k, v in (("regime", regime), ("region", region), ("year", year),
                                 ("electricity_basis", electricity_basis)) if v is not None}
    if not changes:
        raise click.UsageError("nothing to change: give --regime, --region, --year or "
                               "--electricity-basis")
    from dataclasses import replace

    from cloud_receiver.accounting import plant_edit as pe
    from cloud_receiver.accounting.factors import grid_factor
    from cloud_receiver.accounting.model import load_plant

    result = pe.set_accounting(plant_dir, changes)
    chosen = load_plant(plant_dir).accounting
    if chosen is not None:
        found = grid_factor(chosen.regime, chosen.region, chosen.year)
        if isinstance(found, str):
            result = replace(result, notes=(*result.notes, f"reports will have no grid CO2 "
                                            f"factor: {found}"))
    _echo_result(result, as_json)


@plant.command(name="add-replacement")
@_PLANT
@_JSON
@click.argument("point_id")
@click.option("--at", required=True, callback=_aware, metavar="ISO-TIME",
              help="When the meter was swapped, with its UTC offset.")
@click.option("--old-final", type=float, required=True, help="Old meter's register at removal.")
@click.option("--new-initial", type=float, required=True, help="New meter's register at start.")
@click.option("--new-meter", default=None, help="New meter id, if the gateway reports another.")
@click.option("--note", default="", help="Why (kept in the log).")
@handle_errors
def add_replacement_command(plant_dir: Path, as_json: bool, point_id: str, at: datetime,
                            old_final: float, new_initial: float, new_meter: str | None,
                            note: str) -> None:
    """Record a meter replacement in the append-only replacements.toml. Running it again
    with the same values changes nothing; other values at the same time are refused.

    \b
    Example:
        nengtan receiver plant add-replacement press-line --plant plant/ \\
            --at 2025-06-15T10:05:00+08:00 --old-final 6384.4 --new-initial 0 --note "CT fault"
    """
    from cloud_receiver.accounting import plant_edit as pe

    _echo_result(pe.add_replacement(plant_dir, point_id, at=at, old_final=old_final,
                                    new_initial=new_initial, new_meter=new_meter, note=note),
                 as_json)


@plant.command(name="log")
@_PLANT
@_JSON
@click.option("--id", "target", default=None, help="Only changes of this node or point.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Show at most this many, newest last.")
@handle_errors
def log_command(plant_dir: Path, as_json: bool, target: str | None, limit: int) -> None:
    """The plant's change log (changes.log): every applied edit with its time (UTC), the
    account that made it and the values before and after.

    \b
    Example:
        nengtan receiver plant log --plant plant/ --id press-line
    """
    entries, bad = read_changes(plant_dir)
    if target is not None:
        entries = [e for e in entries if str(e.get("id", "")).split("@")[0] == target]
    entries = entries[-limit:]
    if as_json:
        emit_json({"entries": entries, "unreadable_lines": bad})
        return
    for e in entries:
        click.echo(f"{e.get('time')}  {e.get('by', '?'):<10} {e.get('action'):<16} {e.get('id')}")
        for key, old, new in _diff(e.get("before"), e.get("after")):
            click.echo(f"    {key}: {old} -> {new}")
    if not entries:
        click.echo("no changes recorded")
    if bad:
        click.echo(f"warning: unreadable line(s) {', '.join(map(str, bad))} of {CHANGES_FILE}"
                   " skipped", err=True)
