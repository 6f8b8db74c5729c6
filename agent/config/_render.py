"""Render the commented sample config and the reference docs from the schema.

Sample conventions (after Telegraf's sample.conf): prose lines start with ``##``; a value shown
with ``#`` in front is the default and may be left out; a value without it must be set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agent.config._schema import SCHEMA


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _scalars(schema: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for key, spec in schema.get("properties", {}).items():
        if spec.get("type") in ("object", "array"):
            continue
        lines.append(f"## {spec['description']}")
        if "example" in spec:
            lines.append(f"{key} = {_toml_value(spec['example'])}")
        elif "default" in spec:
            lines.append(f"# {key} = {_toml_value(spec['default'])}")
        else:
            lines.append(f"# {key} = \"\"")
    return lines


def render_section(path: str, schema: Mapping[str, Any]) -> str:
    """The sample of one table (``[path]``) or array of tables (``[[path]]``), nested tables too."""
    is_array = schema.get("type") == "array"
    body = schema["items"] if is_array else schema
    lines = [f"## {schema['description']}", f"[[{path}]]" if is_array else f"[{path}]"]
    lines += _scalars(body)
    for key, spec in body.get("properties", {}).items():
        if spec.get("type") in ("object", "array"):
            lines += ["", render_section(f"{path}.{key}", spec).rstrip("\n")]
    return "\n".join(lines) + "\n"


def render_sample() -> str:
    """The whole agent config sample, as `nengtan provision config sample` prints it."""
    props = SCHEMA["properties"]
    parts = [
        "## Nengtan agent configuration (generated from the schema; see docs/config-agent.md).",
        "",
        render_section("gateway", props["gateway"]),
        render_section("inputs.modbus_rtu", props["inputs"]["properties"]["modbus_rtu"]),
        render_section("outputs.mqtt", props["outputs"]["properties"]["mqtt"]),
    ]
    return "\n".join(parts)


def _doc_rows(path: str, schema: Mapping[str, Any], rows: list[str]) -> None:
    body = schema["items"] if schema.get("type") == "array" else schema
    required = set(body.get("required", []))
    for key, spec in body.get("properties", {}).items():
        full = f"{path}.{key}"
        if spec.get("type") in ("object", "array") and "properties" in spec.get("items", spec):
            _doc_rows(full + ("[]" if spec.get("type") == "array" else ""), spec, rows)
            continue
        kind = spec.get("type", "")
        if "enum" in spec:
            kind = " \\| ".join(_toml_value(v) for v in spec["enum"])
        default = "required" if key in required else _toml_value(spec.get("default", "—"))
        rows.append(f"| `{full}` | {kind} | {default} | {spec.get('description', '')} |")


def render_docs() -> str:
    """docs/config-agent.md: one row per key, generated so it cannot drift from the validator."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    props = SCHEMA["properties"]
    _doc_rows("gateway", props["gateway"], rows)
    _doc_rows("inputs.modbus_rtu[]", props["inputs"]["properties"]["modbus_rtu"], rows)
    _doc_rows("inputs.modbus_tcp[]", props["inputs"]["properties"]["modbus_tcp"], rows)
    _doc_rows("outputs.mqtt", props["outputs"]["properties"]["mqtt"], rows)
    intro = ("# Agent configuration reference\n\nGenerated from `agent/config/_schema.py` by "
             "`nengtan provision config docs`; a test fails if this file is stale.\n\n"
             "Inline meter models go under `[models.<name>]`, in the same form as the files in "
             "`agent/meters/models/`.\n\n")
    return intro + "\n".join(rows) + "\n\n## Sample\n\n```toml\n" + render_sample() + "```\n"
