"""Edit the plant model (``plant.toml``, ``replacements.toml``) through an API instead of by hand.

Every edit reads the file with tomlkit (so the operator's comments and layout survive), applies
one change, checks the whole result with the loader's own rules (``validate_plant_doc``: an edit
that would make the plant invalid is refused with the loader's path-named errors and nothing is
written), replaces the file atomically and appends one JSON line to ``changes.log`` so every
change can be audited. Edits are safe to re-run: repeating an add or a set reports "unchanged".
The replacement log is append-only, as it was on paper: there is no way to remove a record.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table
from tomlkit.toml_document import TOMLDocument

from cloud_receiver.accounting import _tomledit as te
from cloud_receiver.accounting._files import write_atomic
from cloud_receiver.accounting._changelog import CHANGES_FILE, append_change, read_changes
from cloud_receiver.accounting.model import PLANT_FILE, REPLACEMENTS_FILE, validate_plant_doc
from nengtan.errors import ConfigError

NODE_FIELDS = ("id", "kind", "name", "parent")
POINT_FIELDS = ("id", "name", "node", "gateway", "meter", "measurement", "level", "energy_type",
                "use", "parent", "scale", "rollover_at")
ACCOUNTING_FIELDS = ("regime", "region", "year", "electricity_basis")
# The loader's defaults, so "the same node again" compares what the plant means, not how the
# first one happened to be typed.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "node": {"parent": None},
    "point": {"measurement": "active_energy_import", "parent": None, "scale": 1.0,
              "rollover_at": None},
}
_REPLACEMENTS_HEADER = ("# Meter replacements, one [[replacement]] per swap (docs/accounting.md).\n"
                        "# Append-only: written by `nengtan receiver plant add-replacement`.\n")

__all__ = ["CHANGES_FILE", "EditResult", "add_node", "add_point", "add_replacement", "read_changes",
           "remove_node", "remove_point", "set_accounting", "update_node", "update_point"]

Apply = Callable[[TOMLDocument, Path], "EditResult"]


@dataclass(frozen=True)
class EditResult:
    """What one edit did. ``status`` is added, updated, removed or unchanged; ``notes`` are
    consequences the technician should know about (e.g. history no longer reported)."""

    action: str
    target: str
    status: str
    file: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.status != "unchanged"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "notes": list(self.notes)}


def _parse(path: Path, missing_ok: bool = False) -> TOMLDocument:
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        if missing_ok:
            return tomlkit.parse(_REPLACEMENTS_HEADER)
        raise ConfigError(str(path), ["At '(file)': not found"]) from exc
    except (TOMLKitError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"At '(file)': not valid TOML: {exc}"]) from exc


def _strict(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"At '(file)': not valid TOML: {exc}"]) from exc


def _run(plant_dir: Path | str, filename: str, apply: Apply) -> EditResult:
    """Apply one edit under the directory's lock; validate, write and log it if it changed."""
    directory = Path(plant_dir)
    path = directory / filename
    if not directory.is_dir():
        raise ConfigError(str(directory), ["At '(directory)': not found"],
                          hint="Give the plant data directory (the one holding plant.toml).")
    with te.edit_lock(directory):
        doc = _parse(path, missing_ok=filename == REPLACEMENTS_FILE)
        result = apply(doc, directory)
        if not result.changed:
            return result
        text = tomlkit.dumps(doc)
        # Validate the very text that will be written, read back the way load_plant reads it.
        texts = {filename: text}
        other = REPLACEMENTS_FILE if filename == PLANT_FILE else PLANT_FILE
        if other == PLANT_FILE or (directory / other).exists():
            texts[other] = tomlkit.dumps(_parse(directory / other))
        try:
            parsed = {name: _strict(directory / name, body) for name, body in texts.items()}
            validate_plant_doc(parsed[PLANT_FILE], directory, parsed.get(REPLACEMENTS_FILE))
        except ConfigError as exc:
            raise ConfigError(f"{exc.source} (refused: {result.action} {result.target!r})",
                              exc.problems, hint="Nothing was written. " + exc.hint) from exc
        write_atomic(path, text)
        # Logged after the write, so the log never claims a change that did not happen.
        append_change(directory, action=result.action, target=result.target, file=result.file,
                      before=result.before, after=result.after, notes=result.notes)
    return result


def _tables(doc: TOMLDocument, kind: str, source: str) -> AoT:
    """The ``[[kind]]`` array of ``doc``, created (after a blank line) if absent."""
    if kind not in doc:
        if tomlkit.dumps(doc).strip() and not tomlkit.dumps(doc).endswith("\n\n"):
            doc.add(tomlkit.nl())
        doc.append(kind, tomlkit.aot())
    aot = doc[kind]
    if not isinstance(aot, AoT):
        raise ConfigError(source, [f"At '{kind}': written as an inline array; the editor only "
                                   f"handles [[{kind}]] tables, so edit this one by hand"])
    return aot


def _find(aot: AoT, item_id: str) -> tuple[int, Table] | None:
    return next(((i, t) for i, t in enumerate(aot) if t.get("id") == item_id), None)


def _checked(kind: str, fields: Mapping[str, Any], allowed: tuple[str, ...], source: str,
             where: str) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ConfigError(source, [f"At '{where}.{k}': not a field the editor sets (one of "
                                   f"{', '.join(allowed)})" for k in unknown])
    return {k: fields[k] for k in allowed if k in fields and fields[k] is not None}


def _effective(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    known = NODE_FIELDS if kind == "node" else POINT_FIELDS
    return {**_DEFAULTS[kind], "name": fields.get("id"),
            **{k: te.plain(v) for k, v in fields.items() if k in known}}


def _series(fields: Mapping[str, Any]) -> str:
    return "/".join(str(fields.get(k, default)) for k, default in
                    (("gateway", "?"), ("meter", "?"), ("measurement", "active_energy_import")))


def _add(plant_dir: Path | str, kind: str, item_id: str, fields: Mapping[str, Any]) -> EditResult:
    allowed = NODE_FIELDS if kind == "node" else POINT_FIELDS

    def apply(doc: TOMLDocument, directory: Path) -> EditResult:
        source = str(directory / PLANT_FILE)
        new = _checked(kind, {"id": item_id, **fields}, allowed, source, f"{kind}[{item_id}]")
        aot = _tables(doc, kind, source)
        found = _find(aot, item_id)
        if found is None:
            te.append_table(aot, new)
            return EditResult(f"add-{kind}", item_id, "added", PLANT_FILE, None, new)
        before, want = _effective(kind, te.plain(found[1])), _effective(kind, new)
        if before == want:
            return EditResult(f"add-{kind}", item_id, "unchanged", PLANT_FILE,
                              te.plain(found[1]), te.plain(found[1]))
        differ = sorted(k for k in want if before.get(k) != want[k])
        raise ConfigError(source, [f"At '{kind}[{found[0]}].id': {item_id!r} already exists with "
                                   f"other values ({', '.join(differ)}); use set-{kind} to "
                                   "change it"], hint=f"Choose another id, or change the "
                                                      f"existing {kind} with set-{kind}.")

    return _run(plant_dir, PLANT_FILE, apply)


def _update(plant_dir: Path | str, kind: str, item_id: str,
            changes: Mapping[str, Any]) -> EditResult:
    allowed = (NODE_FIELDS if kind == "node" else POINT_FIELDS)[1:]  # ids are never renamed

    def apply(doc: TOMLDocument, directory: Path) -> EditResult:
        source = str(directory / PLANT_FILE)
        _checked(kind, changes, allowed, source, f"{kind}[{item_id}]")
        found = _find(_tables(doc, kind, source), item_id)
        if found is None:
            raise ConfigError(source, [f"At '{kind}[{item_id}]': no {kind} {item_id!r}"])
        before, after = _change_table(found[1], changes)
        if after == before:
            return EditResult(f"set-{kind}", item_id, "unchanged", PLANT_FILE, before, after)
        return EditResult(f"set-{kind}", item_id, "updated", PLANT_FILE, before, after,
                          _update_notes(kind, item_id, before, after))

    return _run(plant_dir, PLANT_FILE, apply)


def _change_table(table: Table,
                  changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set (or, for None, remove) keys of ``table``; its contents before and after."""
    before = te.plain(table)
    for key, value in changes.items():
        if value is None:
            table.pop(key, None)
        else:
            te.set_key(table, key, value)
    return before, te.plain(table)


def _update_notes(kind: str, item_id: str, before: dict[str, Any],
                  after: dict[str, Any]) -> tuple[str, ...]:
    notes = []
    if kind == "node" and before.get("parent") != after.get("parent"):
        notes.append(f"totals of past periods move with {item_id!r} when their reports are re-run")
    if kind == "point" and before.get("scale", 1.0) != after.get("scale", 1.0):
        notes.append(f"the new scale applies to every stored reading of {item_id!r}, past periods"
                     " included")
    if kind == "point" and _series(before) != _series(after):
        notes.append(f"readings of {_series(before)} stay in the store but are no longer reported"
                     f" under {item_id!r}; for a meter swap use add-replacement instead")
    return tuple(notes)


def _remove(plant_dir: Path | str, kind: str, item_id: str) -> EditResult:
    def apply(doc: TOMLDocument, directory: Path) -> EditResult:
        source = str(directory / PLANT_FILE)
        aot = _tables(doc, kind, source)
        found = _find(aot, item_id)
        if found is None:
            return EditResult(f"remove-{kind}", item_id, "unchanged", PLANT_FILE,
                              notes=(f"no {kind} {item_id!r} in the plant (already removed?)",))
        dependants = _dependants(doc, directory, kind, item_id)
        if dependants:
            raise ConfigError(source, [f"At '{kind}[{item_id}]': cannot remove it: "
                                       f"{'; '.join(dependants)} depend on it"],
                              hint="Move or remove the dependants first (set-node --parent, "
                                   "set-point --node / --parent).")
        before = te.plain(found[1])
        te.remove_table(aot, found[0])
        notes = (f"readings of {_series(before)} stay in the store but will no longer be"
                 " reported: no metering point binds them",) if kind == "point" else ()
        return EditResult(f"remove-{kind}", item_id, "removed", PLANT_FILE, before, None, notes)

    return _run(plant_dir, PLANT_FILE, apply)


def _dependants(doc: TOMLDocument, directory: Path, kind: str, item_id: str) -> list[str]:
    def ids(key: str, field: str) -> str:
        return ", ".join(repr(str(t.get("id"))) for t in doc.get(key, [])
                         if isinstance(t, Mapping) and t.get(field) == item_id)

    found = ({"child node(s)": ids("node", "parent"), "metering point(s)": ids("point", "node")}
             if kind == "node" else {"downstream point(s)": ids("point", "parent")})
    out = [f"{label} {names}" for label, names in found.items() if names]
    rpath = directory / REPLACEMENTS_FILE
    if kind == "point" and rpath.exists():
        count = sum(1 for t in _parse(rpath).get("replacement", [])
                    if isinstance(t, Mapping) and t.get("point") == item_id)
        if count:
            out.append(f"{count} record(s) of the append-only {REPLACEMENTS_FILE}")
    return out


def add_node(plant_dir: Path | str, node_id: str, *, kind: str, parent: str | None = None,
             name: str | None = None) -> EditResult:
    """Add a node; the same node again is "unchanged", another one with its id an error."""
    return _add(plant_dir, "node", node_id, {"kind": kind, "name": name, "parent": parent})


def update_node(plant_dir: Path | str, node_id: str, changes: Mapping[str, Any]) -> EditResult:
    """Change fields of a node (kind, name, parent); a None value removes the key."""
    return _update(plant_dir, "node", node_id, changes)


def remove_node(plant_dir: Path | str, node_id: str) -> EditResult:
    """Remove a node that no node and no metering point depends on."""
    return _remove(plant_dir, "node", node_id)


def add_point(plant_dir: Path | str, point_id: str, *, node: str, gateway: str, meter: str,
              level: int, energy_type: str, use: str, measurement: str | None = None,
              parent: str | None = None, scale: float | None = None,
              rollover_at: float | None = None, name: str | None = None) -> EditResult:
    """Add a metering point binding ``gateway``/``meter``/``measurement`` to ``node``."""
    return _add(plant_dir, "point", point_id, {
        "name": name, "node": node, "gateway": gateway, "meter": meter,
        "measurement": measurement, "level": level, "energy_type": energy_type, "use": use,
        "parent": parent, "scale": scale, "rollover_at": rollover_at})


def update_point(plant_dir: Path | str, point_id: str, changes: Mapping[str, Any]) -> EditResult:
    """Change fields of a metering point; a None value removes the key (back to its default)."""
    return _update(plant_dir, "point", point_id, changes)


def remove_point(plant_dir: Path | str, point_id: str) -> EditResult:
    """Remove a metering point no other point is downstream of and no replacement names. Its
    stored readings stay in the store; reports no longer show them."""
    return _remove(plant_dir, "point", point_id)


def set_accounting(plant_dir: Path | str, changes: Mapping[str, Any]) -> EditResult:
    """Set keys of ``[accounting]`` (created if absent); a None value removes the key."""
    def apply(doc: TOMLDocument, directory: Path) -> EditResult:
        _checked("accounting", changes, ACCOUNTING_FIELDS, str(directory / PLANT_FILE),
                 "accounting")
        if "accounting" not in doc:
            if not tomlkit.dumps(doc).endswith("\n\n"):
                doc.add(tomlkit.nl())
            doc.append("accounting", tomlkit.table())
        table = doc["accounting"]
        if not isinstance(table, Table):
            raise ConfigError(str(directory / PLANT_FILE), ["At 'accounting': expected a table"])
        before, after = _change_table(table, changes)
        status = "unchanged" if after == before else "updated"
        return EditResult("set-accounting", "accounting", status, PLANT_FILE, before, after)

    return _run(plant_dir, PLANT_FILE, apply)


def add_replacement(plant_dir: Path | str, point: str, *, at: datetime, old_final: float,
                    new_initial: float, new_meter: str | None = None,
                    note: str = "") -> EditResult:
    """Append a meter replacement. The same record again is "unchanged"; another record for
    the same point at the same instant is an error (the log is append-only)."""
    new: dict[str, Any] = {"point": point, "at": at, "old_final": float(old_final),
                           "new_initial": float(new_initial)}
    if new_meter:
        new["new_meter"] = new_meter
    if note:
        new["note"] = note
    target = f"{point}@{at.isoformat()}"

    def same_instant(other: Any) -> bool:
        if not isinstance(other, datetime) or (other.tzinfo is None) != (at.tzinfo is None):
            return False
        return other == at

    def apply(doc: TOMLDocument, directory: Path) -> EditResult:
        source = str(directory / REPLACEMENTS_FILE)
        aot = _tables(doc, "replacement", source)
        for i, table in enumerate(aot):
            if table.get("point") != point or not same_instant(table.get("at")):
                continue
            old = te.plain(table)
            if {**old, "at": None} == {**te.plain(new), "at": None}:
                return EditResult("add-replacement", target, "unchanged", REPLACEMENTS_FILE,
                                  old, old)
            raise ConfigError(source, [f"At 'replacement[{i}]': {point!r} already has a "
                                       f"replacement at {at.isoformat()} with other values; "
                                       "the log is append-only"],
                              hint="Records are never edited: if that one is wrong, fix it by "
                                   "hand and say why in its note.")
        te.append_table(aot, new)
        return EditResult("add-replacement", target, "added", REPLACEMENTS_FILE, None,
                          te.plain(new))

    return _run(plant_dir, REPLACEMENTS_FILE, apply)
